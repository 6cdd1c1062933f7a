//! The snapshot's byte format: a fixed header, an opaque metadata blob (the server's
//! raft metadata), then the [`StateSnapshot`] in postcard.
//!
//! ```text
//! offset  size  what
//!      0     8  magic "DROVSNAP"
//!      8     4  format version (u32 LE), FORMAT_VERSION
//!     12     4  CRC-32 of every byte after the header (u32 LE)
//!     16     8  number of bytes after the header (u64 LE)
//!     24     4  metadata length M (u32 LE)
//!     28     M  metadata
//!   28+M     …  the state, postcard
//! ```
//!
//! Written in one pass to a seekable sink (the header is filled in last) and read in one
//! pass from any reader, so neither side holds the whole snapshot in memory: the state
//! is decoded while the bytes stream in. The checksum and the length are checked at the
//! end of the read; a state that decoded from damaged bytes is dropped then. Postcard is
//! not self-describing, which is why the snapshot's user-facing types are written
//! through mirrors (see `drover-sched`'s `compact` module); a change of the state's
//! shape needs a new `FORMAT_VERSION`.

use crate::machine::{JobRecord, StateSnapshot, TaskRecord};
use drover_sched::SchedulerSnapshot;
use drover_types::{JobId, TaskId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

pub const MAGIC: [u8; 8] = *b"DROVSNAP";
/// Bump when the encoded shape of [`StateSnapshot`] changes. Version 2 added the
/// client ACL tokens and the worker identities (join tokens, credentials) at the end;
/// version 1 snapshots are still read (with no tokens). Version 3 added, inside the
/// scheduler's state, the driver, image, checkpoint and preemptible fields of task
/// specs and the drivers of worker specs (older snapshots are read in the older layout,
/// `drover_sched::pre_driver_layout`: every task on `process`, no checkpoints, every
/// worker with `process` only); the checkpoints of task records; and the result cache
/// at the end (older snapshots read with an empty cache).
/// Version 3 also holds the parts of large jobs sent ahead of their submission
/// (`staging.rs`; older snapshots read with none).
/// Version 4 adds the isolation of worker specs and the GPU indices of attempts (older
/// snapshots read with workers that did not say and attempts without GPUs, through
/// `drover_sched::pre_isolation_layout`) and, at the end, the resized reservations and
/// resize histories (`drover_sched::ResizeSnapshot`, dynamic resources) and then the
/// splits' progress (`StateSnapshot::splits`, adaptive splitting); older snapshots
/// read with neither.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest version still read.
const OLDEST_READ: u32 = 1;

/// A version 1 state: the version 2 one without its last field. (Postcard has no field
/// names: an older shape is decoded through its own struct.)
#[derive(Deserialize)]
struct StateSnapshotV1 {
    sched: SchedulerSnapshot,
    records: BTreeMap<TaskId, TaskRecordV2>,
    jobs: BTreeMap<JobId, JobRecord>,
    idempotency: Vec<crate::idempotency::KeyRecord>,
}

// Each older shape converts into the next one up, adding only the fields its
// successor brought; `StateSnapshot` is reached through the chain.
impl From<StateSnapshotV1> for StateSnapshotV2 {
    fn from(v1: StateSnapshotV1) -> StateSnapshotV2 {
        StateSnapshotV2 {
            sched: v1.sched,
            records: v1.records,
            jobs: v1.jobs,
            idempotency: v1.idempotency,
            tokens: Default::default(),
            identities: Default::default(),
        }
    }
}

impl From<StateSnapshotV1> for StateSnapshot {
    fn from(v1: StateSnapshotV1) -> StateSnapshot {
        StateSnapshotV2::from(v1).into()
    }
}

/// A version 2 state: task records without checkpoints (and task specs in their
/// version 2 shape: see `drover_sched::pre_driver_layout`).
#[derive(Deserialize)]
struct StateSnapshotV2 {
    sched: SchedulerSnapshot,
    records: BTreeMap<TaskId, TaskRecordV2>,
    jobs: BTreeMap<JobId, JobRecord>,
    idempotency: Vec<crate::idempotency::KeyRecord>,
    tokens: crate::acl::TokenSnapshot,
    identities: crate::worker_identity::WorkerIdentities,
}

impl From<StateSnapshotV2> for StateSnapshotV3 {
    fn from(v2: StateSnapshotV2) -> StateSnapshotV3 {
        StateSnapshotV3 {
            sched: v2.sched,
            records: v2.records.into_iter().map(|(t, r)| (t, r.into())).collect(),
            jobs: v2.jobs,
            idempotency: v2.idempotency,
            tokens: v2.tokens,
            identities: v2.identities,
            cache: Default::default(),
            uploads: Vec::new(),
        }
    }
}

impl From<StateSnapshotV2> for StateSnapshot {
    fn from(v2: StateSnapshotV2) -> StateSnapshot {
        StateSnapshotV3::from(v2).into()
    }
}

/// A version 3 state: the version 4 one without the resize state and the splits.
#[derive(Deserialize)]
struct StateSnapshotV3 {
    sched: SchedulerSnapshot,
    records: BTreeMap<TaskId, TaskRecord>,
    jobs: BTreeMap<JobId, JobRecord>,
    idempotency: Vec<crate::idempotency::KeyRecord>,
    tokens: crate::acl::TokenSnapshot,
    identities: crate::worker_identity::WorkerIdentities,
    cache: crate::result_cache::CacheSnapshot,
    uploads: Vec<crate::staging::UploadRecord>,
}

impl From<StateSnapshotV3> for StateSnapshot {
    fn from(v3: StateSnapshotV3) -> StateSnapshot {
        StateSnapshot {
            sched: v3.sched,
            records: v3.records,
            jobs: v3.jobs,
            idempotency: v3.idempotency,
            tokens: v3.tokens,
            identities: v3.identities,
            cache: v3.cache,
            uploads: v3.uploads,
            resizes: Default::default(),
            splits: Vec::new(),
        }
    }
}

/// A task record of formats 1 and 2: no checkpoints.
#[derive(serde::Serialize, Deserialize)]
pub(crate) struct TaskRecordV2 {
    result: Option<String>,
    usage: Vec<(drover_types::Attempt, drover_proto::worker::AttemptUsage)>,
    stdout_bytes: u64,
    stderr_bytes: u64,
    output_truncated: bool,
}

impl From<TaskRecordV2> for TaskRecord {
    fn from(r: TaskRecordV2) -> TaskRecord {
        TaskRecord {
            result: r.result,
            usage: r.usage,
            stdout_bytes: r.stdout_bytes,
            stderr_bytes: r.stderr_bytes,
            output_truncated: r.output_truncated,
            checkpoint: None,
            resumed: Vec::new(),
        }
    }
}
const HEADER_LEN: usize = 24;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotCodecError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Drover snapshot (bad magic)")]
    NotASnapshot,
    #[error("snapshot format version {found} is not known to this server (it reads {known})")]
    UnknownVersion { found: u32, known: u32 },
    #[error(
        "the snapshot is truncated or has trailing bytes: {declared} bytes declared, {found} found"
    )]
    Length { declared: u64, found: u64 },
    #[error("the snapshot is corrupt: checksum {found:08x}, expected {declared:08x}")]
    Checksum { declared: u32, found: u32 },
    #[error("the snapshot metadata is {0} bytes, more than a header can say")]
    MetaTooLarge(usize),
    #[error("cannot encode the state: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode the state: {0}")]
    Decode(postcard::Error),
}

/// Counts and checksums every byte that passes through to `inner`.
struct Summing<T> {
    inner: T,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<T> Summing<T> {
    fn new(inner: T) -> Summing<T> {
        Summing {
            inner,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Summing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Writes `meta` and `state` to `out` (from its current position, which must be the
/// start) and returns it with the header filled in. Does not sync.
pub fn write_snapshot<W: Write + Seek>(
    meta: &[u8],
    state: &StateSnapshot,
    mut out: W,
) -> Result<W, SnapshotCodecError> {
    let meta_len =
        u32::try_from(meta.len()).map_err(|_| SnapshotCodecError::MetaTooLarge(meta.len()))?;
    out.write_all(&[0u8; HEADER_LEN])?;
    let mut body = BufWriter::with_capacity(1 << 20, Summing::new(out));
    body.write_all(&meta_len.to_le_bytes())?;
    body.write_all(meta)?;
    // postcard reports a failed write as "buffer full" and drops the I/O error: keep
    // it, so that a full disk is told as such ("No space left on device").
    let mut recording = KeepIoError {
        inner: body,
        error: None,
    };
    if let Err(e) = postcard::to_io(state, &mut recording) {
        return Err(match recording.error.take() {
            Some(io) => SnapshotCodecError::Io(io),
            None => SnapshotCodecError::Encode(e),
        });
    }
    let mut body = recording.inner;
    body.flush()?;
    let summed = body.into_inner().map_err(|e| e.into_error())?;
    let mut out = summed.inner;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&summed.crc.finalize().to_le_bytes());
    header[16..24].copy_from_slice(&summed.len.to_le_bytes());
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header)?;
    out.seek(SeekFrom::End(0))?;
    Ok(out)
}

/// A writer that keeps the first I/O error its inner writer returned.
struct KeepIoError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for KeepIoError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The bytes after the header, read from the file in large chunks (and summed as they
/// are read), handed to postcard straight from the buffer: postcard's own reader asks
/// for one byte at a time through `Read`, which made decoding several times slower.
struct Chunks<R> {
    inner: Summing<R>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// The most one take may ask for: a damaged length must not become a huge buffer.
    limit: usize,
}

const CHUNK: usize = 1 << 20;
/// No single string in the state comes near this (submissions are bounded far below).
const MAX_TAKE: usize = 256 << 20;

impl<R: Read> Chunks<R> {
    fn new(inner: R, declared: u64) -> Chunks<R> {
        Chunks {
            inner: Summing::new(inner),
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            limit: usize::try_from(declared)
                .unwrap_or(usize::MAX)
                .min(MAX_TAKE),
        }
    }

    /// Makes at least `n` unread bytes available in the buffer, unless the input ends
    /// first; returns how many are.
    fn fill(&mut self, n: usize) -> std::io::Result<usize> {
        if self.len - self.pos >= n {
            return Ok(self.len - self.pos);
        }
        if n > self.limit {
            return Ok(self.len - self.pos);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while self.len < n {
            if self.len == self.buf.len() {
                // Grown as bytes arrive, a chunk at a time, not to `n` at once: a
                // damaged (or fuzzed) length within `limit` must cost what the input
                // holds, not the 256 MiB it claims (found by fuzzing, docs/fuzzing.md).
                self.buf.resize(n.min(self.len + CHUNK), 0);
            }
            let got = self.inner.read(&mut self.buf[self.len..])?;
            if got == 0 {
                break;
            }
            self.len += got;
        }
        Ok(self.len)
    }

    /// The next `n` bytes, or `None` if the input ends before.
    fn take(&mut self, n: usize) -> std::io::Result<Option<&[u8]>> {
        if self.fill(n)? < n {
            return Ok(None);
        }
        let start = self.pos;
        self.pos += n;
        Ok(Some(&self.buf[start..start + n]))
    }

    /// Reads what is left (it should be nothing); returns how many bytes that was.
    fn drain(&mut self) -> std::io::Result<u64> {
        let buffered = (self.len - self.pos) as u64;
        self.pos = self.len;
        Ok(buffered + std::io::copy(&mut self.inner, &mut std::io::sink())?)
    }
}

impl<'de, R: Read + 'de> postcard::de_flavors::Flavor<'de> for &'de mut Chunks<R> {
    type Remainder = ();
    type Source = ();

    #[inline]
    fn pop(&mut self) -> postcard::Result<u8> {
        if self.pos < self.len {
            let b = self.buf[self.pos];
            self.pos += 1;
            return Ok(b);
        }
        match self.take(1) {
            Ok(Some(b)) => Ok(b[0]),
            _ => Err(postcard::Error::DeserializeUnexpectedEnd),
        }
    }

    /// Borrowing from the input outlives the buffer, which is reused: not offered. The
    /// state has no borrowed strings or byte slices (owned ones use the `temp` path).
    fn try_take_n(&mut self, _ct: usize) -> postcard::Result<&'de [u8]> {
        Err(postcard::Error::WontImplement)
    }

    #[inline]
    fn try_take_n_temp<'a>(&'a mut self, ct: usize) -> postcard::Result<&'a [u8]>
    where
        'de: 'a,
    {
        match self.take(ct) {
            Ok(Some(b)) => Ok(b),
            _ => Err(postcard::Error::DeserializeUnexpectedEnd),
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A snapshot being read: its header and metadata are read at once; the state when
/// asked (it is by far the larger part).
pub struct SnapshotReader<R: Read> {
    version: u32,
    body: Chunks<R>,
    crc: u32,
    declared: u64,
    meta: Vec<u8>,
}

impl<R: Read> std::fmt::Debug for SnapshotReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("declared", &self.declared)
            .field("meta_len", &self.meta.len())
            .finish()
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the header, and reads the metadata.
    pub fn open(mut input: R) -> Result<SnapshotReader<R>, SnapshotCodecError> {
        let mut header = [0u8; HEADER_LEN];
        input.read_exact(&mut header).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SnapshotCodecError::NotASnapshot,
            _ => e.into(),
        })?;
        if header[..8] != MAGIC {
            return Err(SnapshotCodecError::NotASnapshot);
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let version = word(8);
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotCodecError::UnknownVersion {
                found: version,
                known: FORMAT_VERSION,
            });
        }
        let crc = word(12);
        let declared = u64::from(word(16)) | (u64::from(word(20)) << 32);
        let mut body = Chunks::new(input, declared);
        let short = |found: u64| SnapshotCodecError::Length { declared, found };
        let len = body.take(4)?.ok_or(short(0))?;
        let meta_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as u64;
        if meta_len + 4 > declared {
            return Err(short(meta_len + 4));
        }
        let meta = body.take(meta_len as usize)?.ok_or(short(4))?.to_vec();
        Ok(SnapshotReader {
            version,
            body,
            crc,
            declared,
            meta,
        })
    }

    /// The metadata blob written with the state.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// Decodes the state as it streams in, then checks the length and the checksum of
    /// the whole body.
    pub fn state(self) -> Result<StateSnapshot, SnapshotCodecError> {
        let SnapshotReader {
            version,
            mut body,
            crc,
            declared,
            ..
        } = self;
        let state = {
            let mut de = postcard::Deserializer::from_flavor(&mut body);
            // A decode error on damaged bytes says less than the checksum would; the
            // caller learns the file is bad either way.
            match version {
                1 => drover_sched::pre_driver_layout(|| StateSnapshotV1::deserialize(&mut de))
                    .map_err(SnapshotCodecError::Decode)?
                    .into(),
                2 => drover_sched::pre_driver_layout(|| StateSnapshotV2::deserialize(&mut de))
                    .map_err(SnapshotCodecError::Decode)?
                    .into(),
                3 => drover_sched::pre_isolation_layout(|| StateSnapshotV3::deserialize(&mut de))
                    .map_err(SnapshotCodecError::Decode)?
                    .into(),
                _ => StateSnapshot::deserialize(&mut de).map_err(SnapshotCodecError::Decode)?,
            }
        };
        // Anything after the state is damage too (and must be summed to be checked).
        let trailing = body.drain()?;
        let summed = &body.inner;
        if summed.len != declared || trailing != 0 {
            return Err(SnapshotCodecError::Length {
                declared,
                found: summed.len,
            });
        }
        let found = summed.crc.clone().finalize();
        if found != crc {
            return Err(SnapshotCodecError::Checksum {
                declared: crc,
                found,
            });
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, LogEntry, StateMachine};
    use drover_sched::SchedulerConfig;
    use drover_types::{JobSpec, Millis, TaskSpec};

    /// A version-1 snapshot (written the way version 1 was: the state without the
    /// identities) still reads, with no identities.
    #[test]
    fn a_version_1_snapshot_reads_without_identities() {
        let mut m = StateMachine::new(SchedulerConfig::default());
        m.apply(&LogEntry {
            now: Millis(1_000),
            commands: vec![Command::Submit {
                job: JobSpec {
                    name: "old".into(),
                    tasks: vec![TaskSpec::command(["true"])],
                    ..Default::default()
                },
                idempotency: None,
                submitter: None,
                staged: None,
            }],
        });
        let state = m.snapshot();
        #[derive(serde::Serialize)]
        struct V1<'a> {
            sched: &'a drover_sched::SchedulerSnapshot,
            records: std::collections::BTreeMap<drover_types::TaskId, TaskRecordV2>,
            jobs: &'a std::collections::BTreeMap<drover_types::JobId, crate::JobRecord>,
            idempotency: &'a Vec<crate::idempotency::KeyRecord>,
        }
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend(
            drover_sched::pre_driver_layout(|| {
                postcard::to_stdvec(&V1 {
                    sched: &state.sched,
                    records: old_records(&state),
                    jobs: &state.jobs,
                    idempotency: &state.idempotency,
                })
            })
            .unwrap(),
        );
        let bytes = framed(1, &body);
        let read = SnapshotReader::open(&bytes[..]).unwrap().state().unwrap();
        assert_eq!(read.jobs, state.jobs);
        assert_eq!(read.records, state.records);
        assert_eq!(read.identities, Default::default());
        let restored = StateMachine::restore(read);
        assert_eq!(restored.job(drover_types::JobId(1)).unwrap().name, "old");
    }

    /// A snapshot file of `version` around `body`: magic, version, CRC, length, body.
    fn framed(version: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(crc32fast::hash(body).to_le_bytes());
        bytes.extend((body.len() as u64).to_le_bytes());
        bytes.extend(body);
        bytes
    }

    /// Task records as formats 1 and 2 wrote them.
    fn old_records(
        state: &StateSnapshot,
    ) -> std::collections::BTreeMap<drover_types::TaskId, TaskRecordV2> {
        state
            .records
            .iter()
            .map(|(t, r)| {
                (
                    *t,
                    TaskRecordV2 {
                        result: r.result.clone(),
                        usage: r.usage.clone(),
                        stdout_bytes: r.stdout_bytes,
                        stderr_bytes: r.stderr_bytes,
                        output_truncated: r.output_truncated,
                    },
                )
            })
            .collect()
    }

    /// A version-2 snapshot (task specs without `checkpoint` and `preemptible`, task
    /// records without checkpoints) still reads, with none of them.
    #[test]
    fn a_version_2_snapshot_reads_without_checkpoints() {
        let mut m = StateMachine::new(SchedulerConfig::default());
        m.apply(&LogEntry {
            now: Millis(1_000),
            commands: vec![Command::Submit {
                job: JobSpec {
                    name: "before checkpoints".into(),
                    tasks: vec![TaskSpec::command(["true"]), TaskSpec::command(["false"])],
                    ..Default::default()
                },
                idempotency: None,
                submitter: None,
                staged: None,
            }],
        });
        let state = m.snapshot();
        #[derive(serde::Serialize)]
        struct V2<'a> {
            sched: &'a drover_sched::SchedulerSnapshot,
            records: std::collections::BTreeMap<drover_types::TaskId, TaskRecordV2>,
            jobs: &'a std::collections::BTreeMap<drover_types::JobId, crate::JobRecord>,
            idempotency: &'a Vec<crate::idempotency::KeyRecord>,
            tokens: &'a crate::acl::TokenSnapshot,
            identities: &'a crate::worker_identity::WorkerIdentities,
        }
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend(
            drover_sched::pre_driver_layout(|| {
                postcard::to_stdvec(&V2 {
                    sched: &state.sched,
                    records: old_records(&state),
                    jobs: &state.jobs,
                    idempotency: &state.idempotency,
                    tokens: &state.tokens,
                    identities: &state.identities,
                })
            })
            .unwrap(),
        );
        let bytes = framed(2, &body);
        let read = SnapshotReader::open(&bytes[..]).unwrap().state().unwrap();
        assert_eq!(read.jobs, state.jobs);
        assert_eq!(read.records, state.records);
        let restored = StateMachine::restore(read);
        let spec = restored
            .scheduler()
            .task(drover_types::TaskId(2))
            .unwrap()
            .spec
            .to_spec()
            .into_owned();
        assert_eq!(spec.command, vec!["false"]);
        assert_eq!((spec.checkpoint.clone(), spec.preemptible), (None, false));
    }

    /// A machine with a running task resized (granted) and a refused resize.
    fn resized_machine() -> StateMachine {
        use drover_sched::ResizeRequest;
        use drover_types::{Attempt, Resources, TaskId, WorkerId, WorkerSpec};
        let mut m = StateMachine::new(SchedulerConfig::default());
        m.apply(&LogEntry {
            now: Millis(1_000),
            commands: vec![
                Command::WorkerJoin {
                    spec: WorkerSpec {
                        name: "w".into(),
                        capacity: Resources {
                            cpu_milli: 4000,
                            memory_bytes: 8 << 30,
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    running: vec![],
                },
                Command::Submit {
                    job: JobSpec {
                        name: "grows".into(),
                        tasks: vec![TaskSpec::command(["sleep", "9"])],
                        ..Default::default()
                    },
                    idempotency: None,
                    submitter: None,
                    staged: None,
                },
            ],
        });
        let resize = |cpu: u32| Command::Resize {
            task: TaskId(1),
            attempt: Some(Attempt(1)),
            worker: Some(WorkerId(1)),
            request: ResizeRequest {
                cpu_milli: Some(cpu),
                memory_bytes: Some(2 << 30),
            },
        };
        m.apply(&LogEntry {
            now: Millis(2_000),
            commands: vec![
                Command::TaskStarted {
                    task: TaskId(1),
                    attempt: Attempt(1),
                    worker: WorkerId(1),
                    gpus: Vec::new(),
                },
                resize(3000),
                resize(9000),
            ],
        });
        m
    }

    /// Format 4 (dynamic resources) keeps resized reservations and histories: the
    /// restored worker counts the resized amounts, and the end frees exactly them.
    #[test]
    fn a_version_4_snapshot_keeps_resized_reservations() {
        use drover_types::{Attempt, TaskId, WorkerId};
        let m = resized_machine();
        let out = write_snapshot(b"meta", &m.snapshot(), std::io::Cursor::new(Vec::new()))
            .unwrap()
            .into_inner();
        let read = SnapshotReader::open(&out[..]).unwrap().state().unwrap();
        let mut restored = StateMachine::restore(read);
        let sched = restored.scheduler();
        sched.check_invariants().unwrap();
        assert_eq!(
            sched.resized_reservation(TaskId(1)).unwrap().cpu_milli,
            3000
        );
        assert_eq!(sched.resize_history(TaskId(1)).len(), 2);
        assert_eq!(sched.worker(WorkerId(1)).unwrap().allocated.cpu_milli, 3000);
        restored.apply(&LogEntry {
            now: Millis(3_000),
            commands: vec![Command::TaskFinished {
                worker: WorkerId(1),
                report: drover_proto::worker::AttemptReport {
                    task: TaskId(1),
                    attempt: Attempt(1),
                    outcome: drover_types::Outcome::Exited { code: 0 },
                    usage: Default::default(),
                    result: String::new(),
                    stdout_bytes: 0,
                    stderr_bytes: 0,
                    output_truncated: false,
                    digest: String::new(),
                },
            }],
        });
        restored.scheduler().check_invariants().unwrap();
        assert!(
            restored
                .scheduler()
                .worker(WorkerId(1))
                .unwrap()
                .allocated
                .is_zero()
        );
    }

    /// A version-3 snapshot (no resize state) still reads, with none.
    #[test]
    fn a_version_3_snapshot_reads_without_resizes() {
        let m = resized_machine();
        let state = m.snapshot();
        #[derive(serde::Serialize)]
        struct V3<'a> {
            sched: &'a drover_sched::SchedulerSnapshot,
            records: &'a std::collections::BTreeMap<drover_types::TaskId, TaskRecord>,
            jobs: &'a std::collections::BTreeMap<drover_types::JobId, crate::JobRecord>,
            idempotency: &'a Vec<crate::idempotency::KeyRecord>,
            tokens: &'a crate::acl::TokenSnapshot,
            identities: &'a crate::worker_identity::WorkerIdentities,
            cache: &'a crate::result_cache::CacheSnapshot,
            uploads: &'a Vec<crate::staging::UploadRecord>,
        }
        let mut body = 0u32.to_le_bytes().to_vec();
        // Version 3's scheduler state is also in the layout before isolation.
        body.extend(drover_sched::pre_isolation_layout(|| {
            postcard::to_stdvec(&V3 {
                sched: &state.sched,
                records: &state.records,
                jobs: &state.jobs,
                idempotency: &state.idempotency,
                tokens: &state.tokens,
                identities: &state.identities,
                cache: &state.cache,
                uploads: &state.uploads,
            })
            .unwrap()
        }));
        let bytes = framed(3, &body);
        let read = SnapshotReader::open(&bytes[..]).unwrap().state().unwrap();
        assert!(read.resizes.is_empty());
        assert_eq!(read.jobs, state.jobs);
        StateMachine::restore(read);
    }

    /// Regression (fuzzing, `snapshot` target): a length near the limit in a tiny
    /// input made the reader allocate and zero all of it before finding the input short.
    #[test]
    fn a_claimed_length_costs_only_what_the_input_holds() {
        let input = std::io::Cursor::new(vec![7u8; 100]);
        let mut chunks = Chunks::new(input, 256 << 20);
        assert!(chunks.take(200 << 20).unwrap().is_none());
        assert!(chunks.buf.len() <= 2 * CHUNK, "{} bytes", chunks.buf.len());
        // What is there is still readable, and a take across refills works.
        let input = std::io::Cursor::new((0..3 * CHUNK).map(|i| i as u8).collect::<Vec<u8>>());
        let mut chunks = Chunks::new(input, 3 * CHUNK as u64);
        assert_eq!(chunks.take(10).unwrap().unwrap()[9], 9);
        let big = chunks.take(2 * CHUNK + 5).unwrap().unwrap();
        assert_eq!(big.len(), 2 * CHUNK + 5);
        assert_eq!(big[0], 10);
        assert!(chunks.take(CHUNK).unwrap().is_none());
    }
}
