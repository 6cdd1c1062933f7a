//! Jobs too large for one log entry, sent in parts.
//!
//! A follower must receive, decode and fsync an append within one heartbeat (openraft
//! bounds every append RPC by it), so one entry holding a job of 30,000 tasks (1 MiB
//! of JSON) already failed there on a loaded machine: the leader's appends timed out,
//! it lost its leadership, and the job could never be committed. The leader therefore
//! sends a large job's tasks ahead, a bounded part per entry (`Command::SubmitPart`),
//! and then the submission itself carrying the last part and a [`StagedRef`] naming
//! the upload. Parts are held here, invisible to everything else (no task, no event,
//! no id), until that final submission takes them: the job appears whole in one entry
//! or not at all.
//!
//! An upload whose submission never comes (its leader died half-way; the client
//! resends, as a new upload) is dropped [`UPLOAD_TTL_MS`] after its first part, by log
//! time, so every replica drops it at the same entry. What all uploads hold together
//! is bounded ([`MAX_STAGED_TASKS`]).

use drover_types::{Millis, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long (log time) an upload may wait for its submission.
pub const UPLOAD_TTL_MS: u64 = 10 * 60 * 1000;
/// Most tasks all open uploads may hold at once (two jobs of the largest size a
/// server accepts by default, with room).
pub const MAX_STAGED_TASKS: u64 = 4_000_000;

/// In a submission: its job's earlier tasks are the parts of this upload, in order,
/// before the submission's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRef {
    pub upload: u64,
    /// Parts sent ahead (numbered 0 to `parts - 1`).
    pub parts: u32,
    /// Tasks in those parts together.
    pub tasks: u64,
}

/// Why a part or a submission's staged tasks were refused. Each is answered as
/// retryable: the client sends the job again (as a new upload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagingError {
    #[error("part {got} of upload {upload:016x} arrived where part {expected} was due")]
    OutOfOrder {
        upload: u64,
        expected: u32,
        got: u32,
    },
    #[error(
        "the parts of upload {upload:016x} sent ahead of this job are gone (expired, or sent by a previous leader); send the job again"
    )]
    Unknown { upload: u64 },
    #[error(
        "upload {upload:016x} holds {held_parts} parts ({held_tasks} tasks), the submission names {parts} parts ({tasks} tasks); send the job again"
    )]
    Incomplete {
        upload: u64,
        held_parts: u32,
        held_tasks: u64,
        parts: u32,
        tasks: u64,
    },
    #[error(
        "large submissions in progress hold {held} tasks, and this part of {part} would pass the limit of {limit}; retry shortly"
    )]
    Full { held: u64, part: u64, limit: u64 },
}

#[derive(Clone, Debug, PartialEq)]
struct Upload {
    started: Millis,
    parts: u32,
    tasks: Vec<TaskSpec>,
}

/// One open upload as written in a snapshot. The tasks are JSON (the snapshot's binary
/// format is not self-describing, and `TaskSpec` skips its default fields): uploads
/// are rare and short-lived, so their size there does not matter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload: u64,
    pub started: Millis,
    pub parts: u32,
    pub tasks_json: String,
}

/// The open uploads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StagedUploads {
    uploads: BTreeMap<u64, Upload>,
    /// Tasks held by all of them.
    held: u64,
}

impl StagedUploads {
    /// Drops uploads older than [`UPLOAD_TTL_MS`] at `now`.
    pub fn expire(&mut self, now: Millis) {
        if self.uploads.is_empty() {
            return;
        }
        let held = &mut self.held;
        self.uploads.retain(|_, u| {
            let keep = now.0.saturating_sub(u.started.0) < UPLOAD_TTL_MS;
            if !keep {
                *held -= u.tasks.len() as u64;
            }
            keep
        });
    }

    /// Adds the next part of an upload (its first opens it).
    pub fn add_part(
        &mut self,
        now: Millis,
        upload: u64,
        part: u32,
        tasks: Vec<TaskSpec>,
    ) -> Result<(), StagingError> {
        let expected = self.uploads.get(&upload).map_or(0, |u| u.parts);
        if part != expected {
            return Err(StagingError::OutOfOrder {
                upload,
                expected,
                got: part,
            });
        }
        let n = tasks.len() as u64;
        if self.held + n > MAX_STAGED_TASKS {
            return Err(StagingError::Full {
                held: self.held,
                part: n,
                limit: MAX_STAGED_TASKS,
            });
        }
        let u = self.uploads.entry(upload).or_insert_with(|| Upload {
            started: now,
            parts: 0,
            tasks: Vec::new(),
        });
        if u.tasks.is_empty() {
            u.tasks = tasks;
        } else {
            u.tasks.extend(tasks);
        }
        u.parts += 1;
        self.held += n;
        Ok(())
    }

    /// Takes an upload's tasks, in order, for the submission that names it; it must
    /// hold exactly what the submission says was sent.
    pub fn take(&mut self, r: &StagedRef) -> Result<Vec<TaskSpec>, StagingError> {
        let Some(u) = self.uploads.get(&r.upload) else {
            return Err(StagingError::Unknown { upload: r.upload });
        };
        if u.parts != r.parts || u.tasks.len() as u64 != r.tasks {
            let e = StagingError::Incomplete {
                upload: r.upload,
                held_parts: u.parts,
                held_tasks: u.tasks.len() as u64,
                parts: r.parts,
                tasks: r.tasks,
            };
            self.discard(r.upload);
            return Err(e);
        }
        let u = self.uploads.remove(&r.upload).expect("checked above");
        self.held -= u.tasks.len() as u64;
        Ok(u.tasks)
    }

    /// Drops an upload (its submission was answered without it: a replayed key).
    pub fn discard(&mut self, upload: u64) {
        if let Some(u) = self.uploads.remove(&upload) {
            self.held -= u.tasks.len() as u64;
        }
    }

    /// Open uploads.
    pub fn len(&self) -> usize {
        self.uploads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty()
    }

    /// Tasks held by all open uploads.
    pub fn held_tasks(&self) -> u64 {
        self.held
    }

    pub fn snapshot(&self) -> Vec<UploadRecord> {
        self.uploads
            .iter()
            .map(|(&upload, u)| UploadRecord {
                upload,
                started: u.started,
                parts: u.parts,
                tasks_json: serde_json::to_string(&u.tasks).expect("task specs serialize"),
            })
            .collect()
    }

    /// From a snapshot's records. An upload whose tasks do not decode is dropped (its
    /// submission then fails as `Unknown` and is sent again) rather than failing the
    /// whole restore.
    pub fn restore(records: Vec<UploadRecord>) -> StagedUploads {
        let mut out = StagedUploads::default();
        for r in records {
            let Ok(tasks) = serde_json::from_str::<Vec<TaskSpec>>(&r.tasks_json) else {
                continue;
            };
            out.held += tasks.len() as u64;
            out.uploads.insert(
                r.upload,
                Upload {
                    started: r.started,
                    parts: r.parts,
                    tasks,
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(n: usize, tag: &str) -> Vec<TaskSpec> {
        (0..n)
            .map(|i| TaskSpec::command(["echo", &format!("{tag}{i}")]))
            .collect()
    }

    #[test]
    fn parts_come_back_in_order_and_only_whole() {
        let mut s = StagedUploads::default();
        s.add_part(Millis(1), 7, 0, tasks(2, "a")).unwrap();
        s.add_part(Millis(2), 7, 1, tasks(3, "b")).unwrap();
        assert_eq!(
            s.add_part(Millis(3), 7, 3, tasks(1, "c")),
            Err(StagingError::OutOfOrder {
                upload: 7,
                expected: 2,
                got: 3
            })
        );
        assert_eq!(s.held_tasks(), 5);
        let got = s
            .take(&StagedRef {
                upload: 7,
                parts: 2,
                tasks: 5,
            })
            .unwrap();
        let args: Vec<&str> = got.iter().map(|t| t.command[1].as_str()).collect();
        assert_eq!(args, ["a0", "a1", "b0", "b1", "b2"]);
        assert!(s.is_empty());
        assert_eq!(s.held_tasks(), 0);
    }

    #[test]
    fn a_submission_naming_more_than_was_staged_is_refused_and_the_upload_dropped() {
        let mut s = StagedUploads::default();
        s.add_part(Millis(1), 9, 0, tasks(2, "a")).unwrap();
        let r = StagedRef {
            upload: 9,
            parts: 2,
            tasks: 4,
        };
        assert!(matches!(s.take(&r), Err(StagingError::Incomplete { .. })));
        assert_eq!(s.take(&r), Err(StagingError::Unknown { upload: 9 }));
        assert_eq!(s.held_tasks(), 0);
    }

    #[test]
    fn uploads_expire_by_log_time_and_the_bound_holds() {
        let mut s = StagedUploads::default();
        s.add_part(Millis(1_000), 1, 0, tasks(1, "a")).unwrap();
        s.add_part(Millis(5_000), 2, 0, tasks(1, "b")).unwrap();
        s.expire(Millis(1_000 + UPLOAD_TTL_MS));
        assert_eq!(s.len(), 1);
        assert_eq!(s.held_tasks(), 1);
        s.held = MAX_STAGED_TASKS;
        assert!(matches!(
            s.add_part(Millis(6_000), 3, 0, tasks(1, "c")),
            Err(StagingError::Full { .. })
        ));
    }

    #[test]
    fn a_snapshot_round_trip_keeps_every_upload() {
        let mut s = StagedUploads::default();
        s.add_part(Millis(1), 1, 0, tasks(2, "a")).unwrap();
        s.add_part(Millis(2), 2, 0, tasks(1, "b")).unwrap();
        s.add_part(Millis(3), 2, 1, tasks(1, "c")).unwrap();
        let back = StagedUploads::restore(s.snapshot());
        assert_eq!(back, s);
    }
}
