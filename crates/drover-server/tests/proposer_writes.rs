//! The write path's proposer against a real single-node server in this process (real
//! openraft, real log on disk): a keyed resend while the first write of a large job is
//! still in flight is not written again, and many more concurrent submitters than the
//! proposer queues at once all get their answers (back-pressure, no deadlock).

use drover_server::{RunningServer, ServerConfig};
use drover_state::{Command, CommandResult, IdempotencyKey};
use drover_types::{JobSpec, TaskSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Env {
    server: Option<RunningServer>,
    dir: PathBuf,
}

impl Env {
    async fn start(name: &str) -> Env {
        let dir =
            std::env::temp_dir().join(format!("drover-proposer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = ServerConfig::new(dir.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = drover_server::start(config).await.expect("server starts");
        let env = Env {
            server: Some(server),
            dir,
        };
        // Writable once it leads (a single node elects itself).
        let deadline = Instant::now() + Duration::from_secs(30);
        while env.node().raft.metrics().borrow().current_leader != Some(env.node().config.node_id) {
            assert!(Instant::now() < deadline, "the single server never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env
    }

    fn node(&self) -> &drover_server::node::Node {
        &self.server.as_ref().unwrap().node
    }

    fn last_log_index(&self) -> u64 {
        self.node()
            .raft
            .metrics()
            .borrow()
            .last_log_index
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn job(name: &str, tasks: usize) -> JobSpec {
    JobSpec {
        name: name.into(),
        owner: String::new(),
        tasks: (0..tasks)
            .map(|i| TaskSpec::command(["echo".to_string(), format!("{name}-{i}")]))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_resend_while_the_first_write_is_in_flight_is_not_written_again() {
    let env = Env::start("resend").await;
    // Large enough that writing and applying it takes far longer than the resends take
    // to arrive (they are sent at once).
    let spec = job("big", 100_000);
    let key = IdempotencyKey::for_job("resend-1".into(), &spec);
    // Let the leader's own first entries settle, then count from here.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = env.last_log_index();
    let started = Instant::now();
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let proposer = env.node().proposer.clone();
            let command = Command::Submit {
                job: spec.clone(),
                idempotency: Some(key.clone()),
                submitter: None,
                staged: None,
            };
            tokio::spawn(async move { proposer.propose(command).await })
        })
        .collect();
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap().expect("the submission is answered"));
    }
    let took = started.elapsed();
    let after = env.last_log_index();

    let firsts: Vec<_> = answers
        .iter()
        .filter_map(|a| match a {
            CommandResult::Submitted { job, tasks } => Some((job, tasks)),
            _ => None,
        })
        .collect();
    let replays: Vec<_> = answers
        .iter()
        .filter_map(|a| match a {
            CommandResult::Replayed { job, tasks } => Some((job, tasks)),
            _ => None,
        })
        .collect();
    assert_eq!(firsts.len(), 1, "one submission is new: {answers:?}");
    assert_eq!(replays.len(), 3, "the resends are replays: {answers:?}");
    assert!(
        replays.iter().all(|r| *r == firsts[0]),
        "the resends name the first one's job and tasks: {answers:?}"
    );
    // One write of the job: its parts sent ahead (a large job goes in parts, see
    // `drover_state::staging`) and its submission. Measured by writing it once more
    // under another key.
    let again = Command::Submit {
        job: spec.clone(),
        idempotency: Some(IdempotencyKey::for_job("resend-2".into(), &spec)),
        submitter: None,
        staged: None,
    };
    let before_once = env.last_log_index();
    env.node()
        .proposer
        .propose(again)
        .await
        .expect("a second job");
    let once = env.last_log_index() - before_once;
    assert!(
        once > 1,
        "a job of 100,000 tasks goes in parts ({once} entries)"
    );
    assert_eq!(
        after - before,
        once,
        "the job was written once, not once per resend (the write took {took:?})"
    );

    // Once answered, the key is no longer in flight: a later resend is written and
    // answered by the apply-time lookup, with the same ids.
    let again = env
        .node()
        .proposer
        .propose(Command::Submit {
            job: job("small", 1),
            idempotency: Some(IdempotencyKey::for_job("resend-1".into(), &spec)),
            submitter: None,
            staged: None,
        })
        .await;
    // A different body under the same key: refused when applied (not waited on).
    assert!(
        !matches!(again, Ok(CommandResult::Submitted { .. })),
        "{again:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_more_concurrent_submitters_than_the_queue_holds_all_get_answers() {
    let env = Env::start("pressure").await;
    // More than the proposer queues at once (4096), so most wait for a place; ticks and
    // reports proposed without waiting are mixed in.
    const SUBMITTERS: usize = 10_000;
    let started = Instant::now();
    let sends: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            let proposer = env.node().proposer.clone();
            if i % 100 == 0 {
                proposer.propose_nowait(Command::Tick);
            }
            tokio::spawn(async move {
                proposer
                    .propose(Command::Submit {
                        job: job(&format!("j{i}"), 1),
                        idempotency: None,
                        submitter: None,
                        staged: None,
                    })
                    .await
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(240), async {
        let mut jobs = std::collections::BTreeSet::new();
        for s in sends {
            match s.await.unwrap() {
                Ok(CommandResult::Submitted { job, .. }) => {
                    jobs.insert(job);
                }
                other => panic!("a submission failed: {other:?}"),
            }
        }
        jobs
    })
    .await
    .expect("every submitter is answered (no deadlock under back-pressure)");
    assert_eq!(all.len(), SUBMITTERS, "each submission made its own job");
    eprintln!(
        "{SUBMITTERS} concurrent submitters answered in {:?}",
        started.elapsed()
    );
    env.stop().await;
}
