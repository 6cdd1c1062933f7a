//! Decoding a [`Command`] without serde's buffering.
//!
//! `Command` is written as an internally tagged map (`{"cmd": "submit", "job": …}`).
//! serde's derived decoder for that shape cannot know where the tag is, so it first
//! copies the whole map into a generic tree and then decodes the tree again: for a job
//! of a thousand task specs, every key and string is allocated twice. Decoding the log
//! is what a server does for every entry it re-applies after a crash (the tail after
//! its snapshot) and for every entry a follower is sent, so this decoder reads the tag
//! first when it comes first (as the derived encoder always writes it) and decodes the
//! rest of the map straight into the variant's fields. A map whose tag is not first
//! still decodes, through the derived path. Same format either way.

use crate::acl::NewToken;
use crate::command::Command;
use crate::idempotency::IdempotencyKey;
use crate::staging::StagedRef;
use drover_proto::checkpoint::CheckpointRef;
use drover_proto::worker::AttemptReport;
use drover_sched::{CancelTarget, ResizeRequest};
use drover_types::{
    Attempt, JobSpec, PolicyConfig, TaskId, TaskSpec, WorkerId, WorkerSpec, WorkerUsage,
};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The derived decoder of the same shape: the fallback for a map whose tag is not its
/// first key.
#[derive(Deserialize)]
#[serde(remote = "Command", tag = "cmd", rename_all = "snake_case")]
enum Tagged {
    Submit {
        job: JobSpec,
        #[serde(default)]
        idempotency: Option<IdempotencyKey>,
        #[serde(default)]
        submitter: Option<u64>,
        #[serde(default)]
        staged: Option<StagedRef>,
    },
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
    WorkerUpdate {
        worker: WorkerId,
        usage: WorkerUsage,
        #[serde(default)]
        data_keys: Option<Vec<String>>,
    },
    TaskStarted {
        task: TaskId,
        attempt: Attempt,
        worker: WorkerId,
        #[serde(default)]
        gpus: Vec<u32>,
    },
    TaskFinished {
        worker: WorkerId,
        report: AttemptReport,
    },
    SetPolicy {
        policy: PolicyConfig,
    },
    Tick,
    Retire {
        keep_ms: u64,
        keep_max: u64,
    },
    TokenCreate {
        token: NewToken,
    },
    TokenRevoke {
        id: u64,
    },
    JoinTokenCreate {
        id: String,
        digest: String,
        ttl_ms: u64,
        uses: u32,
    },
    WorkerEnroll {
        token: String,
        token_digest: String,
        name: String,
        credential: String,
        credential_digest: String,
    },
    WorkerRevoke {
        name: String,
    },
    CacheRemove {
        key: String,
    },
    CacheClear,
    CheckpointSaved {
        task: TaskId,
        checkpoint: CheckpointRef,
    },
    Resize {
        task: TaskId,
        #[serde(default)]
        attempt: Option<Attempt>,
        #[serde(default)]
        worker: Option<WorkerId>,
        request: ResizeRequest,
    },
}

const VARIANTS: &[&str] = &[
    "submit",
    "submit_part",
    "cancel",
    "worker_join",
    "worker_lost",
    "worker_drain",
    "worker_resume",
    "worker_update",
    "task_started",
    "task_finished",
    "set_policy",
    "tick",
    "retire",
    "token_create",
    "token_revoke",
    "join_token_create",
    "worker_enroll",
    "worker_revoke",
    "cache_remove",
    "cache_clear",
    "checkpoint_saved",
    "resize",
];

#[derive(Deserialize)]
struct ResizeFields {
    task: TaskId,
    #[serde(default)]
    attempt: Option<Attempt>,
    #[serde(default)]
    worker: Option<WorkerId>,
    request: ResizeRequest,
}

#[derive(Deserialize)]
struct CheckpointSavedFields {
    task: TaskId,
    checkpoint: CheckpointRef,
}

#[derive(Deserialize)]
struct SubmitFields {
    job: JobSpec,
    #[serde(default)]
    idempotency: Option<IdempotencyKey>,
    #[serde(default)]
    submitter: Option<u64>,
    #[serde(default)]
    staged: Option<StagedRef>,
}

#[derive(Deserialize)]
struct SubmitPartFields {
    upload: u64,
    part: u32,
    tasks: Vec<TaskSpec>,
}

#[derive(Deserialize)]
struct CancelFields {
    target: CancelTarget,
}

#[derive(Deserialize)]
struct WorkerJoinFields {
    spec: WorkerSpec,
    running: Vec<(TaskId, Attempt)>,
}

#[derive(Deserialize)]
struct WorkerFields {
    worker: WorkerId,
}

#[derive(Deserialize)]
struct WorkerUpdateFields {
    worker: WorkerId,
    usage: WorkerUsage,
    #[serde(default)]
    data_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TaskStartedFields {
    task: TaskId,
    attempt: Attempt,
    worker: WorkerId,
    #[serde(default)]
    gpus: Vec<u32>,
}

#[derive(Deserialize)]
struct TaskFinishedFields {
    worker: WorkerId,
    report: AttemptReport,
}

#[derive(Deserialize)]
struct SetPolicyFields {
    policy: PolicyConfig,
}

#[derive(Deserialize)]
struct NoFields {}

#[derive(Deserialize)]
struct TokenCreateFields {
    token: NewToken,
}

#[derive(Deserialize)]
struct TokenRevokeFields {
    id: u64,
}

#[derive(Deserialize)]
struct RetireFields {
    keep_ms: u64,
    keep_max: u64,
}

#[derive(Deserialize)]
struct JoinTokenCreateFields {
    id: String,
    digest: String,
    ttl_ms: u64,
    uses: u32,
}

#[derive(Deserialize)]
struct WorkerEnrollFields {
    token: String,
    token_digest: String,
    name: String,
    credential: String,
    credential_digest: String,
}

#[derive(Deserialize)]
struct CacheRemoveFields {
    key: String,
}

#[derive(Deserialize)]
struct WorkerRevokeFields {
    name: String,
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Command, D::Error> {
        deserializer.deserialize_map(CommandVisitor)
    }
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a command: a map with its kind under \"cmd\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Command, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("cmd"));
        };
        if first != "cmd" {
            return fallback(first, map);
        }
        let kind: String = map.next_value()?;
        let rest = MapAccessDeserializer::new(map);
        Ok(match kind.as_str() {
            "submit" => {
                let f = SubmitFields::deserialize(rest)?;
                Command::Submit {
                    job: f.job,
                    idempotency: f.idempotency,
                    submitter: f.submitter,
                    staged: f.staged,
                }
            }
            "submit_part" => {
                let f = SubmitPartFields::deserialize(rest)?;
                Command::SubmitPart {
                    upload: f.upload,
                    part: f.part,
                    tasks: f.tasks,
                }
            }
            "cancel" => Command::Cancel {
                target: CancelFields::deserialize(rest)?.target,
            },
            "worker_join" => {
                let f = WorkerJoinFields::deserialize(rest)?;
                Command::WorkerJoin {
                    spec: f.spec,
                    running: f.running,
                }
            }
            "worker_lost" => Command::WorkerLost {
                worker: WorkerFields::deserialize(rest)?.worker,
            },
            "worker_drain" => Command::WorkerDrain {
                worker: WorkerFields::deserialize(rest)?.worker,
            },
            "worker_resume" => Command::WorkerResume {
                worker: WorkerFields::deserialize(rest)?.worker,
            },
            "worker_update" => {
                let f = WorkerUpdateFields::deserialize(rest)?;
                Command::WorkerUpdate {
                    worker: f.worker,
                    usage: f.usage,
                    data_keys: f.data_keys,
                }
            }
            "task_started" => {
                let f = TaskStartedFields::deserialize(rest)?;
                Command::TaskStarted {
                    task: f.task,
                    attempt: f.attempt,
                    worker: f.worker,
                    gpus: f.gpus,
                }
            }
            "task_finished" => {
                let f = TaskFinishedFields::deserialize(rest)?;
                Command::TaskFinished {
                    worker: f.worker,
                    report: f.report,
                }
            }
            "set_policy" => Command::SetPolicy {
                policy: SetPolicyFields::deserialize(rest)?.policy,
            },
            "tick" => {
                NoFields::deserialize(rest)?;
                Command::Tick
            }
            "retire" => {
                let f = RetireFields::deserialize(rest)?;
                Command::Retire {
                    keep_ms: f.keep_ms,
                    keep_max: f.keep_max,
                }
            }
            "token_create" => Command::TokenCreate {
                token: TokenCreateFields::deserialize(rest)?.token,
            },
            "token_revoke" => Command::TokenRevoke {
                id: TokenRevokeFields::deserialize(rest)?.id,
            },
            "join_token_create" => {
                let f = JoinTokenCreateFields::deserialize(rest)?;
                Command::JoinTokenCreate {
                    id: f.id,
                    digest: f.digest,
                    ttl_ms: f.ttl_ms,
                    uses: f.uses,
                }
            }
            "worker_enroll" => {
                let f = WorkerEnrollFields::deserialize(rest)?;
                Command::WorkerEnroll {
                    token: f.token,
                    token_digest: f.token_digest,
                    name: f.name,
                    credential: f.credential,
                    credential_digest: f.credential_digest,
                }
            }
            "worker_revoke" => Command::WorkerRevoke {
                name: WorkerRevokeFields::deserialize(rest)?.name,
            },
            "cache_remove" => Command::CacheRemove {
                key: CacheRemoveFields::deserialize(rest)?.key,
            },
            "cache_clear" => {
                NoFields::deserialize(rest)?;
                Command::CacheClear
            }
            "checkpoint_saved" => {
                let f = CheckpointSavedFields::deserialize(rest)?;
                Command::CheckpointSaved {
                    task: f.task,
                    checkpoint: f.checkpoint,
                }
            }
            "resize" => {
                let f = ResizeFields::deserialize(rest)?;
                Command::Resize {
                    task: f.task,
                    attempt: f.attempt,
                    worker: f.worker,
                    request: f.request,
                }
            }
            other => return Err(de::Error::unknown_variant(other, VARIANTS)),
        })
    }
}

/// The map did not start with the tag: gather it whole and decode it the derived way.
fn fallback<'de, A: MapAccess<'de>>(first: String, mut map: A) -> Result<Command, A::Error> {
    let mut whole = serde_json::Map::new();
    let value: serde_json::Value = map.next_value()?;
    whole.insert(first, value);
    while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
        whole.insert(k, v);
    }
    Tagged::deserialize(serde_json::Value::Object(whole)).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_types::{Resources, TaskSpec};

    fn every_kind() -> Vec<Command> {
        let job = JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec::command(["echo", "hi"])],
            ..Default::default()
        };
        vec![
            Command::Submit {
                job: job.clone(),
                idempotency: None,
                submitter: None,
                staged: None,
            },
            Command::Submit {
                job,
                idempotency: Some(IdempotencyKey {
                    key: "k".into(),
                    fingerprint: 7,
                }),
                submitter: Some(4),
                staged: Some(StagedRef {
                    upload: 0xfeed,
                    parts: 2,
                    tasks: 20_000,
                }),
            },
            Command::SubmitPart {
                upload: 0xfeed,
                part: 1,
                tasks: vec![TaskSpec::command(["echo", "part"])],
            },
            Command::Cancel {
                target: CancelTarget::Task(TaskId(1)),
            },
            Command::Cancel {
                target: CancelTarget::Job(drover_types::JobId(2)),
            },
            Command::WorkerJoin {
                spec: WorkerSpec {
                    name: "w".into(),
                    capacity: Resources::cpus(2000),
                    ..Default::default()
                },
                running: vec![(TaskId(3), Attempt(1))],
            },
            Command::WorkerLost {
                worker: WorkerId(1),
            },
            Command::WorkerDrain {
                worker: WorkerId(2),
            },
            Command::WorkerResume {
                worker: WorkerId(3),
            },
            Command::WorkerUpdate {
                worker: WorkerId(2),
                usage: WorkerUsage {
                    cpu_milli: 1500,
                    memory_bytes: 1 << 30,
                    disk_free_bytes: 7,
                },
                data_keys: Some(vec!["part1".into(), "dir/part2".into()]),
            },
            Command::WorkerUpdate {
                worker: WorkerId(2),
                usage: WorkerUsage::default(),
                data_keys: None,
            },
            Command::TaskStarted {
                task: TaskId(4),
                attempt: Attempt(2),
                worker: WorkerId(1),
                gpus: vec![],
            },
            Command::TaskStarted {
                task: TaskId(5),
                attempt: Attempt(1),
                worker: WorkerId(1),
                gpus: vec![2, 3],
            },
            Command::SetPolicy {
                policy: PolicyConfig::default(),
            },
            Command::Tick,
            Command::Retire {
                keep_ms: 10,
                keep_max: 20,
            },
            Command::TokenCreate {
                token: NewToken {
                    name: "ci".into(),
                    role: drover_types::Role::Submit,
                    namespace: Some("team".into()),
                    ttl_ms: Some(3_600_000),
                    hash: [9; 32],
                },
            },
            Command::TokenCreate {
                token: NewToken {
                    name: String::new(),
                    role: drover_types::Role::Admin,
                    namespace: None,
                    ttl_ms: None,
                    hash: [0; 32],
                },
            },
            Command::TokenRevoke { id: 3 },
            Command::JoinTokenCreate {
                id: "t".into(),
                digest: "d".into(),
                ttl_ms: 1000,
                uses: 2,
            },
            Command::WorkerEnroll {
                token: "t".into(),
                token_digest: "d".into(),
                name: "w".into(),
                credential: "c".into(),
                credential_digest: "e".into(),
            },
            Command::WorkerRevoke { name: "w".into() },
            Command::CacheRemove { key: "ab".into() },
            Command::CacheClear,
            Command::Resize {
                task: TaskId(5),
                attempt: Some(Attempt(2)),
                worker: Some(WorkerId(1)),
                request: ResizeRequest {
                    cpu_milli: Some(4000),
                    memory_bytes: None,
                },
            },
            Command::Resize {
                task: TaskId(6),
                attempt: None,
                worker: None,
                request: ResizeRequest {
                    cpu_milli: None,
                    memory_bytes: Some(1 << 30),
                },
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_through_json() {
        for c in every_kind() {
            let text = serde_json::to_string(&c).unwrap();
            assert!(
                text.starts_with(r#"{"cmd":"#),
                "the tag is written first: {text}"
            );
            let back: Command = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
            // The same through the derived decoder.
            let mut d = serde_json::Deserializer::from_str(&text);
            assert_eq!(Tagged::deserialize(&mut d).unwrap(), c);
        }
    }

    #[test]
    fn a_map_whose_tag_is_not_first_still_decodes() {
        for c in every_kind() {
            let serde_json::Value::Object(map) = serde_json::to_value(&c).unwrap() else {
                panic!("a command is a map")
            };
            // Tag last.
            let mut text = String::from("{");
            let mut parts: Vec<String> = map
                .iter()
                .filter(|(k, _)| *k != "cmd")
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                .collect();
            parts.push(format!(r#""cmd":{}"#, map["cmd"]));
            text.push_str(&parts.join(","));
            text.push('}');
            let back: Command = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn unknown_kinds_and_missing_fields_are_errors() {
        let e = serde_json::from_str::<Command>(r#"{"cmd":"launch"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
        let e = serde_json::from_str::<Command>(r#"{"cmd":"worker_lost"}"#).unwrap_err();
        assert!(e.to_string().contains("worker"), "{e}");
        assert!(serde_json::from_str::<Command>("{}").is_err());
        // Unknown fields are ignored, as by the derived decoder.
        let c: Command = serde_json::from_str(r#"{"cmd":"tick","extra":1}"#).unwrap();
        assert_eq!(c, Command::Tick);
    }
}
