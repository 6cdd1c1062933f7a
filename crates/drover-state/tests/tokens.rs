//! Client ACL tokens in the replicated state: created and revoked by log entries, the
//! same on every replica, kept through a snapshot, and absent (not an error) from a
//! snapshot of format version 1.

use drover_sched::SchedulerConfig;
use drover_state::{
    Command, CommandResult, LogEntry, NewToken, SnapshotReader, StateMachine, write_snapshot,
};
use drover_types::{JobId, JobSpec, Millis, Role, TaskSpec};
use std::io::Cursor;

fn entry(now: u64, commands: Vec<Command>) -> LogEntry {
    LogEntry {
        now: Millis(now),
        commands,
    }
}

fn create(role: Role, ttl_ms: Option<u64>) -> Command {
    Command::TokenCreate {
        token: NewToken {
            name: format!("{role}-token"),
            role,
            namespace: Some("team-a".into()),
            ttl_ms,
            hash: [role as u8; 32],
        },
    }
}

fn submit(submitter: Option<u64>) -> Command {
    Command::Submit {
        job: JobSpec {
            name: "j".into(),
            tasks: vec![TaskSpec::command(["true"])],
            ..Default::default()
        },
        idempotency: None,
        submitter,
        staged: None,
    }
}

fn machine_with_tokens() -> StateMachine {
    let mut m = StateMachine::new(SchedulerConfig::default());
    let (results, _) = m.apply(&entry(
        1_000,
        vec![
            create(Role::Submit, None),
            create(Role::Read, Some(60_000)),
            submit(Some(1)),
            submit(None),
            Command::TokenRevoke { id: 2 },
            Command::TokenRevoke { id: 9 },
        ],
    ));
    assert_eq!(results[0], CommandResult::TokenCreated { id: 1 });
    assert_eq!(results[1], CommandResult::TokenCreated { id: 2 });
    assert_eq!(results[4], CommandResult::Done);
    match &results[5] {
        CommandResult::Rejected(r) => assert_eq!(r.code, "not_found"),
        other => panic!("revoking an unknown token: {other:?}"),
    }
    m
}

#[test]
fn tokens_are_created_revoked_and_remember_what_they_submitted() {
    let m = machine_with_tokens();
    let t1 = m.tokens().get(1).unwrap();
    assert_eq!(t1.role, Role::Submit);
    assert_eq!(t1.namespace.as_deref(), Some("team-a"));
    assert_eq!(t1.created_at, Millis(1_000));
    assert!(t1.usable_at(Millis(1_000_000)));
    let t2 = m.tokens().get(2).unwrap();
    assert_eq!(t2.expires_at, Some(Millis(61_000)));
    assert_eq!(t2.revoked_at, Some(Millis(1_000)));
    assert!(!t2.usable_at(Millis(1_001)));
    assert_eq!(m.tokens().submitter(JobId(1)), Some(1));
    assert_eq!(m.tokens().submitter(JobId(2)), None);
}

#[test]
fn tokens_survive_a_snapshot_and_a_version_1_snapshot_still_reads() {
    let m = machine_with_tokens();
    let bytes = write_snapshot(b"meta", &m.snapshot(), Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let restored =
        StateMachine::restore(SnapshotReader::open(&bytes[..]).unwrap().state().unwrap());
    assert_eq!(restored.tokens(), m.tokens());
    // The next id goes on from the restored table.
    let mut restored = restored;
    let (r, _) = restored.apply(&entry(2_000, vec![create(Role::Admin, None)]));
    assert_eq!(r[0], CommandResult::TokenCreated { id: 3 });

    // A version 1 snapshot is a version 4 one without the token table, the worker
    // identities, the result cache, the staged uploads, the resize state and the
    // splits: written from a state with none, its last bytes are those six; a version 2
    // one lacks only the last four, a version 3 one the last two.
    let plain = StateMachine::new(SchedulerConfig::default());
    let snap = plain.snapshot();
    let v4 = write_snapshot(b"", &snap, Cursor::new(Vec::new()))
        .unwrap()
        .into_inner();
    let older = |tail: Vec<u8>, version: u32| {
        assert_eq!(&v4[v4.len() - tail.len()..], &tail[..]);
        let mut old = v4[..v4.len() - tail.len()].to_vec();
        let body_len = (old.len() - 24) as u64;
        let crc = crc32fast::hash(&old[24..]);
        old[8..12].copy_from_slice(&version.to_le_bytes());
        old[12..16].copy_from_slice(&crc.to_le_bytes());
        old[16..24].copy_from_slice(&body_len.to_le_bytes());
        StateMachine::restore(SnapshotReader::open(&old[..]).unwrap().state().unwrap())
    };
    let tail = postcard::to_stdvec(&(
        &snap.tokens,
        &snap.identities,
        &snap.cache,
        &snap.uploads,
        &snap.resizes,
        &snap.splits,
    ))
    .unwrap();
    let old = older(tail, 1);
    assert_eq!(old.tokens().iter().count(), 0);
    let tail =
        postcard::to_stdvec(&(&snap.cache, &snap.uploads, &snap.resizes, &snap.splits)).unwrap();
    let old = older(tail, 2);
    assert_eq!(old.cache().entries().count(), 0);
    let tail = postcard::to_stdvec(&(&snap.resizes, &snap.splits)).unwrap();
    let old = older(tail, 3);
    assert!(old.scheduler().split_records().is_empty());
}
