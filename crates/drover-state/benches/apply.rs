//! The state machine's apply path: a job of N tasks submitted in one entry, then every
//! start reported started and finished, entry after entry, on 10 workers. Prints the
//! time per task and the events derived. `-- --quick` runs 1/10 of the tasks.

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::idempotency::digest;
use drover_state::{Command, Dispatch, IdempotencyKey, LogEntry, StateMachine};
use drover_types::{JobSpec, Millis, Outcome, Resources, TaskSpec, WorkerSpec};
use std::time::Instant;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = if quick { 20_000 } else { 200_000 };
    let mut m = StateMachine::new(SchedulerConfig::default());
    let mut index = 0u64;
    let mut events = 0usize;
    let mut apply = |m: &mut StateMachine, now: u64, commands: Vec<Command>| {
        index += 1;
        let out = m.apply_indexed(
            index,
            &LogEntry {
                now: Millis(now),
                commands,
            },
        );
        events += out.events.len();
        out.dispatches
    };
    let workers: Vec<Command> = (0..10)
        .map(|i| Command::WorkerJoin {
            spec: WorkerSpec {
                name: format!("w{i}"),
                capacity: Resources {
                    cpu_milli: 64_000,
                    memory_bytes: 1 << 40,
                    ..Resources::default()
                },
                ..WorkerSpec::default()
            },
            running: vec![],
        })
        .collect();
    apply(&mut m, 1, workers);
    let mut spec = TaskSpec::command(["true"]);
    spec.resources.cpu_milli = 1000;
    let job = JobSpec {
        name: "bench".into(),
        owner: String::new(),
        tasks: (0..n).map(|_| spec.clone()).collect(),
    };
    let fingerprinted = job.clone();
    let t = Instant::now();
    let mut pending = apply(
        &mut m,
        2,
        vec![Command::Submit {
            job,
            idempotency: None,
            submitter: None,
            staged: None,
        }],
    );
    let mut now = 3;
    let mut done = 0;
    while done < n {
        let mut commands = Vec::new();
        for d in pending.drain(..) {
            if let Dispatch::Start { worker, start } = d {
                commands.push(Command::TaskStarted {
                    task: start.task,
                    attempt: start.attempt,
                    worker,
                    gpus: Vec::new(),
                });
                commands.push(Command::TaskFinished {
                    worker,
                    report: AttemptReport {
                        task: start.task,
                        attempt: start.attempt,
                        outcome: Outcome::Exited { code: 0 },
                        usage: AttemptUsage::default(),
                        result: String::new(),
                        stdout_bytes: 0,
                        stderr_bytes: 0,
                        output_truncated: false,
                        digest: String::new(),
                    },
                });
                done += 1;
            }
        }
        now += 1;
        pending = apply(&mut m, now, commands);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "bench=state_apply tasks={n} entries={index} total_s={s:.3} us_per_task={:.2} events={events}",
        s * 1e6 / n as f64
    );

    idempotency_costs(&fingerprinted, quick);
}

/// What idempotency keys cost: the digest of a job's request body (computed once, by
/// the server that takes the request; median of 5), and applying keyed single-task
/// submissions against unkeyed ones (the window's lookup and insert).
fn idempotency_costs(job: &JobSpec, quick: bool) {
    let body = serde_json::to_vec(job).unwrap();
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(digest(&body));
            t.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    println!(
        "bench=idempotency_digest tasks={} body_mb={:.1} median_ms={:.2}",
        job.tasks.len(),
        body.len() as f64 / 1e6,
        runs[2] * 1e3
    );
    let k: u64 = if quick { 2_000 } else { 20_000 };
    let one = JobSpec {
        name: "one".into(),
        owner: String::new(),
        tasks: vec![TaskSpec::command(["true"])],
    };
    for keyed in [false, true] {
        let mut m = StateMachine::new(SchedulerConfig::default());
        let t = Instant::now();
        for i in 0..k {
            let idempotency = keyed.then(|| IdempotencyKey::for_job(format!("key-{i}"), &one));
            m.apply(&LogEntry {
                now: Millis(i + 1),
                commands: vec![Command::Submit {
                    job: one.clone(),
                    idempotency,
                    submitter: None,
                    staged: None,
                }],
            });
        }
        println!(
            "bench=submit_apply keyed={keyed} submissions={k} us_per_submit={:.2}",
            t.elapsed().as_secs_f64() * 1e6 / k as f64
        );
    }
}
