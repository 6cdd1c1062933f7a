//! What the log carries, and what applying it answers.

use crate::acl::NewToken;
use crate::idempotency::IdempotencyKey;
use crate::staging::{StagedRef, StagingError};
use drover_proto::checkpoint::CheckpointRef;
use drover_proto::worker::AttemptReport;
use drover_sched::{CancelTarget, CoreError, ResizeDecision, ResizeRequest, TaskRange};
use drover_types::{
    Attempt, JobId, JobSpec, Millis, PolicyConfig, TaskId, TaskSpec, WorkerId, WorkerSpec,
    WorkerUsage,
};
use serde::{Deserialize, Serialize};

/// One log entry: the leader's time when it proposed the entry, and a batch of commands.
/// Batching many commands into one entry is what lets a burst of submissions share one
/// fsync and one scheduling round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub now: Millis,
    pub commands: Vec<Command>,
}

/// A state change. Every change to the cluster's state is one of these, in the log.
/// Decoded by `command_decode.rs` (the same format, without serde's buffering of an
/// internally tagged map): a change here needs the same change there.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Submit {
        job: JobSpec,
        /// The client's idempotency key, if it gave one: a submission with a key seen
        /// before is answered as the first one was (see `idempotency.rs`).
        #[serde(default)]
        idempotency: Option<IdempotencyKey>,
        /// The client ACL token that submitted it (none for the cluster token or a
        /// session of it): a `submit` token may cancel only its own jobs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitter: Option<u64>,
        /// A job too large for one entry: its earlier tasks were sent ahead as the parts
        /// of this upload (`SubmitPart`) and come before `job.tasks` (see `staging.rs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staged: Option<StagedRef>,
    },
    /// Tasks of a large job sent ahead of its `Submit`, held aside (invisible) until the
    /// submission takes them. Parts of one upload arrive in order from 0.
    SubmitPart {
        upload: u64,
        part: u32,
        tasks: Vec<TaskSpec>,
    },
    Cancel {
        target: CancelTarget,
    },
    WorkerJoin {
        spec: WorkerSpec,
        running: Vec<(TaskId, Attempt)>,
    },
    WorkerLost {
        worker: WorkerId,
    },
    WorkerDrain {
        worker: WorkerId,
    },
    WorkerResume {
        worker: WorkerId,
    },
    /// What a worker measured and holds, proposed by the leader's session of that
    /// worker, rate-limited (see `drover-server/src/worker_updates.rs`): its tasks'
    /// usage (load-aware placement orders workers by it) and, when they changed, the
    /// data keys it holds (locality scoring), which replace those it declared.
    WorkerUpdate {
        worker: WorkerId,
        usage: WorkerUsage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_keys: Option<Vec<String>>,
    },
    TaskStarted {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        /// The GPU indices the worker gave the attempt.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gpus: Vec<u32>,
    },
    TaskFinished {
        worker: WorkerId,
        report: AttemptReport,
    },
    SetPolicy {
        policy: PolicyConfig,
    },
    /// Nothing but the passage of time: lets timers (time limits, retry backoffs) fire.
    Tick,
    /// Retention: removes complete jobs that completed `keep_ms` or more before the
    /// entry's `now`, or while more than `keep_max` finished tasks are held, oldest
    /// first, with their results (see `drover-sched`, `Event::Retire`). The leader
    /// proposes it; every replica removes the same jobs.
    Retire {
        keep_ms: u64,
        keep_max: u64,
    },
    /// A new client ACL token (its secret's hash only); answered `TokenCreated`.
    TokenCreate {
        token: NewToken,
    },
    /// Revokes a client ACL token: every server refuses it from the entry on.
    TokenRevoke {
        id: u64,
    },
    /// A join token (see `worker_identity.rs`): `uses` workers may join with it until
    /// `ttl_ms` after the entry's time. Only the digest of its secret is logged.
    JoinTokenCreate {
        id: String,
        digest: String,
        ttl_ms: u64,
        uses: u32,
    },
    /// A worker joining with a join token: uses one use of it and binds a new worker
    /// credential (its digest) to the worker's name.
    WorkerEnroll {
        token: String,
        token_digest: String,
        name: String,
        credential: String,
        credential_digest: String,
    },
    /// Revokes the credential of the worker `name` (or the credential of that id).
    WorkerRevoke {
        name: String,
    },
    /// Removes one result cache entry (its key, 64 hex digits).
    CacheRemove {
        key: String,
    },
    /// Empties the result cache.
    CacheClear,
    /// A checkpoint of a task is stored, whole and checked, on the server that took it
    /// (and being copied to the others): the next attempt of the task resumes from it.
    CheckpointSaved {
        task: TaskId,
        checkpoint: CheckpointRef,
    },
    /// Dynamic resources: change the reservation of the task's placed attempt. From a
    /// task through its agent, `attempt` and `worker` are the asking attempt's (and
    /// checked); from the API, both absent (the current attempt).
    Resize {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<Attempt>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<WorkerId>,
        request: ResizeRequest,
    },
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResult {
    Submitted {
        job: JobId,
        tasks: TaskRange,
    },
    /// A keyed submission seen before (a client's retry): the first one's ids; nothing
    /// changed.
    Replayed {
        job: JobId,
        tasks: TaskRange,
    },
    WorkerJoined {
        worker: WorkerId,
    },
    Cancelled {
        count: u64,
    },
    /// Jobs and tasks a retirement removed.
    Retired {
        jobs: u64,
        tasks: u64,
    },
    /// Result cache entries removed.
    CacheRemoved {
        count: u64,
    },
    /// A part of a large job is held (see `staging.rs`).
    PartStaged {
        upload: u64,
        part: u32,
    },
    /// The id of the token a `TokenCreate` made.
    TokenCreated {
        id: u64,
    },
    /// A resize was decided (granted or refused; see `drover_sched::ResizeDecision`).
    Resized {
        decision: ResizeDecision,
    },
    Done,
    Rejected(Rejection),
}

/// Why a command was refused. Carries what the API needs to answer with a 4xx.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// `invalid_request`, `not_found`, `conflict`, `stale`, or `unavailable` (try
    /// again: nothing was changed).
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl From<&crate::worker_identity::IdentityError> for Rejection {
    fn from(e: &crate::worker_identity::IdentityError) -> Rejection {
        use crate::worker_identity::IdentityError as E;
        let code = match e {
            E::UnknownToken | E::UnknownCredential(_) => "not_found",
            E::Expired | E::UsedUp | E::DuplicateId(_) | E::NameTaken(_) => "conflict",
        };
        Rejection {
            code: code.to_string(),
            message: e.to_string(),
            field: None,
        }
    }
}

impl From<&StagingError> for Rejection {
    fn from(e: &StagingError) -> Rejection {
        Rejection {
            code: "unavailable".to_string(),
            message: e.to_string(),
            field: None,
        }
    }
}

impl From<&CoreError> for Rejection {
    fn from(e: &CoreError) -> Rejection {
        let (code, field) = match e {
            CoreError::Invalid(v) => ("invalid_request", Some(v.field.clone())),
            CoreError::UnknownTask(_) | CoreError::UnknownJob(_) | CoreError::UnknownWorker(_) => {
                ("not_found", None)
            }
            CoreError::StaleAttempt { .. } | CoreError::WrongWorker { .. } => ("stale", None),
            CoreError::AlreadyFinal { .. }
            | CoreError::BadTransition { .. }
            | CoreError::NotRunning { .. } => ("conflict", None),
        };
        let message = match e {
            CoreError::Invalid(v) => v.reason.clone(),
            other => other.to_string(),
        };
        Rejection {
            code: code.to_string(),
            message,
            field,
        }
    }
}
