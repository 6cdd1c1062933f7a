//! Adaptive splitting: one task entry over a range of integers, cut into chunks by the
//! server. Each chunk is a task that sees its slice as `DROVER_RANGE_START` and
//! `DROVER_RANGE_END` (both inclusive); a key given to a split names every chunk, so a
//! combine step that depends on it reads the chunks' results in range order.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// Most chunks a split may be cut into. A split reserves this many task slots (or its
/// fixed count) at submission, so that the job's tasks keep consecutive ids and the
/// combine step's dependencies are known at once; slots the range did not need end as
/// succeeded without running and give no input to a combine step.
pub const MAX_SPLIT_CHUNKS: u32 = 1000;
/// Slots an automatic split reserves (fewer for a shorter range): at most this many
/// chunks, the last ones sized to cover the rest of the range.
pub const AUTO_SPLIT_SLOTS: u32 = 128;
/// The target duration of a chunk of an automatic split that names none.
pub const DEFAULT_CHUNK_DURATION_MS: u64 = 30_000;

/// How a range is split: `{"range": "1-1000000", "chunks": "auto"}`, `"chunks": 64`
/// (that many equal chunks), or `"chunk_duration_ms": 30000` (automatic, aiming at
/// chunks of that duration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    deny_unknown_fields,
    expecting = "a split: an object with a range and chunks or chunk_duration_ms"
)]
pub struct SplitSpec {
    /// The integers to cover, `"A-B"` inclusive (or `{"start": A, "end": B}`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1-1000000"))]
    pub range: SplitRange,
    /// `"auto"` (the default): a first wave of small probe chunks, one per free slot
    /// of the cluster at submission, then chunks sized from their measured runtimes
    /// to last about `chunk_duration_ms`; or a number: that many equal chunks.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "auto"))]
    pub chunks: SplitChunks,
    /// The duration an automatic split aims at for each chunk (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub chunk_duration_ms: Option<u64>,
}

impl SplitSpec {
    /// The task slots the split takes in its job: its fixed count, or for an
    /// automatic split up to [`AUTO_SPLIT_SLOTS`] (never more than the range's length).
    pub fn slots(&self) -> u64 {
        let len = self.range.len();
        match self.chunks {
            SplitChunks::Count(n) => (n as u64).min(len),
            SplitChunks::Auto => len.min(AUTO_SPLIT_SLOTS as u64),
        }
    }

    /// The target duration of an automatic chunk.
    pub fn target_ms(&self) -> u64 {
        self.chunk_duration_ms.unwrap_or(DEFAULT_CHUNK_DURATION_MS)
    }
}

/// An inclusive range of integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SplitRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

impl SplitRange {
    /// How many integers it holds (0 when `end < start`; saturates at `u64::MAX`).
    pub fn len(&self) -> u64 {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start).saturating_add(1)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `A-B` (inclusive).
    pub fn parse(text: &str) -> Option<SplitRange> {
        let (a, b) = text.trim().split_once('-')?;
        Some(SplitRange {
            start: a.trim().parse().ok()?,
            end: b.trim().parse().ok()?,
        })
    }
}

impl fmt::Display for SplitRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for SplitRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SplitRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SplitRange, D::Error> {
        struct RangeVisitor;
        impl<'de> Visitor<'de> for RangeVisitor {
            type Value = SplitRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a range \"A-B\" of whole numbers (inclusive)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SplitRange, E> {
                SplitRange::parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SplitRange, A::Error> {
                let (mut start, mut end) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "start" => start = Some(map.next_value()?),
                        "end" => end = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["start", "end"])),
                    }
                }
                Ok(SplitRange {
                    start: start.ok_or_else(|| de::Error::missing_field("start"))?,
                    end: end.ok_or_else(|| de::Error::missing_field("end"))?,
                })
            }
        }
        d.deserialize_any(RangeVisitor)
    }
}

/// How many chunks: chosen by the server, or fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SplitChunks {
    #[default]
    Auto,
    Count(u32),
}

impl Serialize for SplitChunks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SplitChunks::Auto => s.serialize_str("auto"),
            SplitChunks::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for SplitChunks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SplitChunks, D::Error> {
        struct ChunksVisitor;
        impl Visitor<'_> for ChunksVisitor {
            type Value = SplitChunks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a number of chunks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SplitChunks, E> {
                match v.trim() {
                    "auto" => Ok(SplitChunks::Auto),
                    t => t
                        .parse()
                        .map(SplitChunks::Count)
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SplitChunks, E> {
                u32::try_from(v)
                    .map(SplitChunks::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SplitChunks, E> {
                u32::try_from(v)
                    .map(SplitChunks::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(ChunksVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_read_from_json() {
        let s: SplitSpec = serde_json::from_str(r#"{"range":"1-1000","chunks":"auto"}"#).unwrap();
        assert_eq!(
            s.range,
            SplitRange {
                start: 1,
                end: 1000
            }
        );
        assert_eq!(s.chunks, SplitChunks::Auto);
        assert_eq!(s.slots(), AUTO_SPLIT_SLOTS as u64);
        let s: SplitSpec = serde_json::from_str(r#"{"range":"0-9","chunks":64}"#).unwrap();
        assert_eq!(s.slots(), 10);
        let back: SplitSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<SplitSpec>(r#"{"range":"x"}"#).is_err());
    }
}
