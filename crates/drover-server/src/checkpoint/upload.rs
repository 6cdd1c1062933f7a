//! Checkpoint uploads in progress on one worker session: chunks are appended in order
//! until the archive is whole. One upload per attempt at a time (a newer version
//! replaces an unfinished older one); bounded by `--max-checkpoint`.

use drover_proto::checkpoint::{CheckpointChunk, CheckpointRef};
use drover_types::{Attempt, TaskId};
use std::collections::BTreeMap;

/// Why a chunk was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("a checkpoint of {total} bytes is larger than --max-checkpoint ({max} bytes)")]
    TooLarge { total: u64, max: u64 },
    #[error("a checkpoint chunk at offset {offset} where {expected} was expected")]
    OutOfOrder { offset: u64, expected: u64 },
    #[error("a checkpoint chunk whose bytes are not base64")]
    Malformed,
    #[error("a checkpoint chunk goes past the declared size")]
    Overflow,
}

struct Partial {
    version: u32,
    total: u64,
    digest: String,
    bytes: Vec<u8>,
}

/// The uploads of one session.
#[derive(Default)]
pub struct Uploads {
    partial: BTreeMap<(TaskId, Attempt), Partial>,
}

impl Uploads {
    /// Takes one chunk; returns the archive and its reference once it is whole.
    pub fn take(
        &mut self,
        chunk: CheckpointChunk,
        max: u64,
    ) -> Result<Option<(CheckpointRef, Vec<u8>)>, UploadError> {
        let key = (chunk.task, chunk.attempt);
        if chunk.total > max {
            self.partial.remove(&key);
            return Err(UploadError::TooLarge {
                total: chunk.total,
                max,
            });
        }
        let data = chunk.bytes().map_err(|_| UploadError::Malformed)?;
        if chunk.offset == 0 {
            self.partial.insert(
                key,
                Partial {
                    version: chunk.version,
                    total: chunk.total,
                    digest: chunk.digest.clone(),
                    bytes: Vec::with_capacity(chunk.total.min(16 << 20) as usize),
                },
            );
        }
        let Some(p) = self.partial.get_mut(&key) else {
            return Err(UploadError::OutOfOrder {
                offset: chunk.offset,
                expected: 0,
            });
        };
        let expected = p.bytes.len() as u64;
        if p.version != chunk.version || chunk.offset != expected || p.digest != chunk.digest {
            self.partial.remove(&key);
            return Err(UploadError::OutOfOrder {
                offset: chunk.offset,
                expected,
            });
        }
        if expected + data.len() as u64 > p.total {
            self.partial.remove(&key);
            return Err(UploadError::Overflow);
        }
        p.bytes.extend_from_slice(&data);
        if (p.bytes.len() as u64) < p.total {
            return Ok(None);
        }
        let p = self.partial.remove(&key).expect("present");
        Ok(Some((
            CheckpointRef {
                attempt: chunk.attempt,
                version: p.version,
                size: p.total,
                digest: p.digest,
                saved_at: Default::default(),
            },
            p.bytes,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_in_order_and_refuses_what_is_too_large() {
        let archive: Vec<u8> = (0..1_200_000u32).map(|i| i as u8).collect();
        let chunks = CheckpointChunk::split(TaskId(1), Attempt(2), 3, &archive);
        let mut u = Uploads::default();
        let mut done = None;
        for c in chunks.clone() {
            done = u.take(c, 10 << 20).unwrap();
        }
        let (r, bytes) = done.unwrap();
        assert_eq!(
            (r.version, r.size, bytes == archive),
            (3, archive.len() as u64, true)
        );
        assert_eq!(
            u.take(chunks[0].clone(), 1000),
            Err(UploadError::TooLarge {
                total: archive.len() as u64,
                max: 1000
            })
        );
        // A chunk out of order drops the upload.
        assert!(u.take(chunks[1].clone(), 10 << 20).is_err());
    }
}
