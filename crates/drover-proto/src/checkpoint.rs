//! Checkpoints on the wire: the record of a saved version, and the chunks that carry
//! its bytes between a worker and the server.
//!
//! A checkpoint is an archive of an attempt's checkpoint directory, opaque to the
//! server. It travels in [`CheckpointChunk`]s (JSON messages on the worker's
//! WebSocket, bytes in base64) of at most [`CHUNK_BYTES`], in order; the last one
//! carries nothing more than the others, but the receiver checks the whole archive
//! against `digest` before it uses it.

use base64::Engine;
use drover_types::{Attempt, Millis, TaskId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raw bytes per chunk: small enough to keep a message well under the worker message
/// limit and to interleave with heartbeats, big enough to keep the JSON overhead low.
pub const CHUNK_BYTES: usize = 512 << 10;

/// One saved version of a task's checkpoint, as the log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointRef {
    /// The attempt that wrote it.
    pub attempt: Attempt,
    /// Its number among that attempt's saves, from 1.
    pub version: u32,
    /// Bytes of the archive.
    pub size: u64,
    /// SHA-256 of the archive (hex).
    pub digest: String,
    /// When it was recorded (the log's clock).
    #[serde(default)]
    pub saved_at: Millis,
}

impl std::fmt::Display for CheckpointRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} version {}", self.attempt, self.version)
    }
}

/// A piece of one checkpoint version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointChunk {
    pub task: TaskId,
    /// The attempt that wrote the checkpoint (for a restore: not the one that reads it).
    pub attempt: Attempt,
    pub version: u32,
    /// Where `data` goes in the archive.
    pub offset: u64,
    /// The archive's whole size.
    pub total: u64,
    /// SHA-256 of the whole archive (hex).
    pub digest: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub data: String,
}

impl CheckpointChunk {
    /// Cuts an archive into chunks (at least one, even for an empty archive).
    pub fn split(task: TaskId, attempt: Attempt, version: u32, archive: &[u8]) -> Vec<Self> {
        let digest = digest_hex(archive);
        let total = archive.len() as u64;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut chunks: Vec<Self> = archive
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, piece)| CheckpointChunk {
                task,
                attempt,
                version,
                offset: (i * CHUNK_BYTES) as u64,
                total,
                digest: digest.clone(),
                data: engine.encode(piece),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(CheckpointChunk {
                task,
                attempt,
                version,
                offset: 0,
                total: 0,
                digest,
                data: String::new(),
            });
        }
        chunks
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}

/// SHA-256 of `bytes`, hex.
pub fn digest_hex(bytes: &[u8]) -> String {
    crate::integrity::to_hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_join_back_into_the_archive() {
        let archive: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17)).map(|i| i as u8).collect();
        let chunks = CheckpointChunk::split(TaskId(3), Attempt(2), 5, &archive);
        assert_eq!(chunks.len(), 3);
        let mut joined = Vec::new();
        for c in &chunks {
            assert_eq!(c.offset, joined.len() as u64);
            joined.extend(c.bytes().unwrap());
        }
        assert_eq!(joined, archive);
        assert_eq!(chunks[2].digest, digest_hex(&archive));
        assert_eq!(
            CheckpointChunk::split(TaskId(3), Attempt(2), 1, &[]).len(),
            1
        );
    }
}
