//! Putting one stream's output chunks in order by their offsets, and repairing a gap
//! with a replay (`logs`) from the plugin.

use crate::output_sink::OutputSink;
use std::collections::BTreeMap;

/// Chunks held past a gap while a replay is awaited, at most (beyond it the gap is
/// accepted: memory is not spent on a plugin that does not fill it).
const MAX_HELD_BYTES: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gap {
    None,
    /// `logs` asked; chunks past the expected offset are held for after the replay.
    Replaying,
    /// The plugin could not fill a gap: chunks are appended as they come.
    Accepted,
}

/// Where one stream stands: its file is append-only, so a chunk is written only when
/// it continues what the file has. Overlap (a replay of what arrived) is trimmed.
#[derive(Debug)]
pub(crate) struct StreamOrder {
    gap: Gap,
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
}

impl StreamOrder {
    pub(crate) fn new() -> Self {
        StreamOrder {
            gap: Gap::None,
            held: BTreeMap::new(),
            held_bytes: 0,
        }
    }

    pub(crate) fn is_replaying(&self) -> bool {
        self.gap == Gap::Replaying
    }

    /// Takes a chunk that starts at `offset`. Returns the offset to replay from when
    /// it opens a gap (the caller asks the plugin for `logs` from there).
    pub(crate) fn deliver(
        &mut self,
        sink: &mut OutputSink,
        offset: u64,
        data: &[u8],
    ) -> Option<u64> {
        let expected = sink.bytes();
        if offset > expected {
            return match self.gap {
                Gap::Accepted => {
                    sink.write(data);
                    None
                }
                Gap::Replaying => {
                    self.hold(sink, offset, data);
                    None
                }
                Gap::None => {
                    self.gap = Gap::Replaying;
                    self.hold(sink, offset, data);
                    Some(expected)
                }
            };
        }
        write_after(sink, offset, data);
        if self.gap == Gap::Replaying {
            // What was held may continue the file now.
            while let Some(entry) = self.held.first_entry() {
                if *entry.key() > sink.bytes() {
                    break;
                }
                let (at, chunk) = entry.remove_entry();
                self.held_bytes -= chunk.len();
                write_after(sink, at, &chunk);
            }
            if self.held.is_empty() {
                self.gap = Gap::None;
            }
        }
        None
    }

    /// The replay ended (answered, or refused): a gap still open stays, and what was
    /// held is written after it.
    pub(crate) fn replay_done(&mut self, sink: &mut OutputSink) -> bool {
        if self.gap != Gap::Replaying {
            return false;
        }
        self.accept(sink);
        true
    }

    /// Writes what is held, in offset order, and appends whatever comes from now on.
    pub(crate) fn accept(&mut self, sink: &mut OutputSink) {
        self.gap = Gap::Accepted;
        for (at, chunk) in std::mem::take(&mut self.held) {
            if at >= sink.bytes() {
                sink.write(&chunk);
            } else {
                write_after(sink, at, &chunk);
            }
        }
        self.held_bytes = 0;
    }

    fn hold(&mut self, sink: &mut OutputSink, offset: u64, data: &[u8]) {
        self.held_bytes += data.len();
        self.held.entry(offset).or_insert_with(|| data.to_vec());
        if self.held_bytes > MAX_HELD_BYTES {
            self.accept(sink);
        }
    }
}

/// Writes the part of a chunk at `offset` that lies past what the sink has.
fn write_after(sink: &mut OutputSink, offset: u64, data: &[u8]) {
    let skip = usize::try_from(sink.bytes().saturating_sub(offset)).unwrap_or(usize::MAX);
    if skip < data.len() {
        sink.write(&data[skip..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Stream;

    fn sink(tag: &str) -> (OutputSink, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("drover-stream-order-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (
            OutputSink::new(Stream::Stdout, path.clone(), 1 << 20, 0, None),
            path,
        )
    }

    #[test]
    fn overlap_is_trimmed_and_a_gap_waits_for_its_replay() {
        let (mut s, path) = sink("replay");
        let mut o = StreamOrder::new();
        assert_eq!(o.deliver(&mut s, 0, b"abc"), None);
        assert_eq!(o.deliver(&mut s, 1, b"bcd"), None, "overlap trimmed");
        assert_eq!(o.deliver(&mut s, 6, b"gh"), Some(4), "a gap asks from 4");
        assert_eq!(o.deliver(&mut s, 8, b"ij"), None, "held, no second ask");
        assert!(o.is_replaying());
        assert_eq!(o.deliver(&mut s, 4, b"efg"), None);
        assert!(!o.is_replaying(), "the replay reached what was held");
        assert!(!o.replay_done(&mut s));
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefghij");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unfilled_gap_is_kept_and_nothing_after_it_is_lost() {
        let (mut s, path) = sink("accept");
        let mut o = StreamOrder::new();
        o.deliver(&mut s, 0, b"ab");
        assert_eq!(o.deliver(&mut s, 6, b"gh"), Some(2));
        o.deliver(&mut s, 4, b"ef");
        assert!(o.replay_done(&mut s));
        o.deliver(&mut s, 8, b"ij");
        assert_eq!(std::fs::read(&path).unwrap(), b"abefghij");
        let _ = std::fs::remove_file(&path);
    }
}
