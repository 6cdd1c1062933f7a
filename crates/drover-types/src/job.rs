//! Jobs: atomic batches of tasks, and how tasks refer to each other.

use crate::ids::{JobId, TaskId};
use crate::task_spec::TaskSpec;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A batch of tasks submitted atomically: either every task is accepted, or none is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a job: an object with a list of tasks"
)]
pub struct JobSpec {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::string))]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Default owner for tasks that name none.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::string))]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, required = true))]
    pub tasks: Vec<TaskSpec>,
}

/// A reference to another task: its numeric id (from an earlier submission) or a key
/// reference (see [`KeyRef`]). In JSON: `17`, `"prepare"`, `"nightly/prepare"` or
/// `"12/prepare"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DepRef {
    Id(TaskId),
    Key(String),
}

/// Read by hand rather than as an untagged enum, so that a wrong value is named as what
/// it is ("expected a task id or key, found a boolean") and not as a Rust type.
impl<'de> Deserialize<'de> for DepRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DepRef, D::Error> {
        struct DepVisitor;
        impl Visitor<'_> for DepVisitor {
            type Value = DepRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task id (a whole number) or a task key (a string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DepRef, E> {
                Ok(DepRef::Id(TaskId(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DepRef, E> {
                u64::try_from(v)
                    .map(|v| DepRef::Id(TaskId(v)))
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DepRef, E> {
                Ok(DepRef::Key(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<DepRef, E> {
                Ok(DepRef::Key(v))
            }
        }
        d.deserialize_any(DepVisitor)
    }
}

impl fmt::Display for DepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepRef::Id(id) => write!(f, "{id}"),
            DepRef::Key(k) => f.write_str(k),
        }
    }
}

impl DepRef {
    /// Reads what a user typed: all digits is an id, anything else a key.
    pub fn parse(text: &str) -> DepRef {
        match text.parse::<u64>() {
            Ok(n) => DepRef::Id(TaskId(n)),
            Err(_) => DepRef::Key(text.to_string()),
        }
    }
}

/// What the text of a key reference names. Keys are scoped to their job: a key may
/// contain no `/` and may not be all digits, so these forms never overlap.
///
/// * `KEY`: in the same submission, that job's task; otherwise the newest task anywhere
///   with that key;
/// * `JOB_ID/KEY` (the part before the last `/` all digits): the task with that key in
///   exactly that job;
/// * `JOB_NAME/KEY`: the task with that key in the newest job with that name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRef<'a> {
    Bare(&'a str),
    InJob { job: JobId, key: &'a str },
    InNamedJob { name: &'a str, key: &'a str },
}

impl<'a> KeyRef<'a> {
    /// Splits at the last `/` (a job name may itself contain one; a key may not).
    pub fn parse(text: &'a str) -> KeyRef<'a> {
        match text.rsplit_once('/') {
            None => KeyRef::Bare(text),
            Some((job, key)) => match job.parse::<u64>() {
                Ok(n) if job.bytes().all(|b| b.is_ascii_digit()) => {
                    KeyRef::InJob { job: JobId(n), key }
                }
                _ => KeyRef::InNamedJob { name: job, key },
            },
        }
    }

    /// The key part.
    pub fn key(&self) -> &'a str {
        match self {
            KeyRef::Bare(key) | KeyRef::InJob { key, .. } | KeyRef::InNamedJob { key, .. } => key,
        }
    }
}

/// An index range `start..=end` that expands one task entry into `end - start + 1` tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    deny_unknown_fields,
    expecting = "an index range: an object with start and end"
)]
pub struct ArraySpec {
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub start: u32,
    /// Inclusive.
    #[cfg_attr(feature = "openapi", schema(maximum = 4294967295_u64))]
    pub end: u32,
}

impl ArraySpec {
    pub fn len(&self) -> u64 {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start) as u64 + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses `A-B` (inclusive) or a single `N` (meaning `0-(N-1)`).
    pub fn parse(text: &str) -> Option<ArraySpec> {
        let t = text.trim();
        if let Some((a, b)) = t.split_once('-') {
            Some(ArraySpec {
                start: a.trim().parse().ok()?,
                end: b.trim().parse().ok()?,
            })
        } else {
            let n: u32 = t.parse().ok()?;
            (n > 0).then(|| ArraySpec {
                start: 0,
                end: n - 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_refs_read_as_ids_or_keys() {
        let deps: Vec<DepRef> = serde_json::from_str(r#"[17, "prepare"]"#).unwrap();
        assert_eq!(
            deps,
            vec![DepRef::Id(TaskId(17)), DepRef::Key("prepare".into())]
        );
        assert_eq!(DepRef::parse("42"), DepRef::Id(TaskId(42)));
        assert_eq!(DepRef::parse("a42"), DepRef::Key("a42".into()));
    }

    #[test]
    fn key_refs_split_at_the_last_slash() {
        assert_eq!(KeyRef::parse("fetch"), KeyRef::Bare("fetch"));
        assert_eq!(
            KeyRef::parse("12/fetch"),
            KeyRef::InJob {
                job: JobId(12),
                key: "fetch"
            }
        );
        assert_eq!(
            KeyRef::parse("team/nightly/fetch"),
            KeyRef::InNamedJob {
                name: "team/nightly",
                key: "fetch"
            }
        );
        assert_eq!(
            KeyRef::parse("+1/x"),
            KeyRef::InNamedJob {
                name: "+1",
                key: "x"
            }
        );
        assert_eq!(KeyRef::parse("n/").key(), "");
    }

    #[test]
    fn arrays_parse() {
        assert_eq!(ArraySpec::parse("1-10").unwrap().len(), 10);
        assert_eq!(ArraySpec::parse("4"), Some(ArraySpec { start: 0, end: 3 }));
        assert_eq!(ArraySpec::parse("0"), None);
        assert!(ArraySpec { start: 5, end: 4 }.is_empty());
    }
}
