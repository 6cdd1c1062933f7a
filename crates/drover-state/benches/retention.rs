//! Steady state under retention: 10,000,000 short tasks pushed through the state
//! machine (jobs of 1,000 submitted, placed, started, finished, entry after entry, on
//! 10 workers, 1 ms of log time per entry) with a retirement every 10 entries keeping
//! 200,000 finished tasks at most. Prints, every 1,000,000 tasks: tasks held, jobs
//! held, the process's resident memory (from /proc/self/statm), and the median apply
//! time of a retirement entry. `-- --quick` runs 100,000 tasks (cap 20,000).

use drover_proto::worker::{AttemptReport, AttemptUsage};
use drover_sched::SchedulerConfig;
use drover_state::{Command, CommandResult, Dispatch, LogEntry, StateMachine};
use drover_types::{JobSpec, Millis, Outcome, Resources, TaskSpec, WorkerSpec};
use std::time::Instant;

/// Resident set size in MiB, from /proc/self/statm (pages).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    (pages * 4096) as f64 / (1 << 20) as f64
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (total, keep_max, report_every) = if quick {
        (100_000u64, 20_000u64, 10_000u64)
    } else {
        (10_000_000, 200_000, 1_000_000)
    };
    const JOB: usize = 1_000;
    let mut m = StateMachine::new(SchedulerConfig::default());
    let mut now = 1u64;
    let apply = |m: &mut StateMachine, now: u64, commands: Vec<Command>| {
        m.apply(&LogEntry {
            now: Millis(now),
            commands,
        })
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
    apply(&mut m, now, workers);
    let mut spec = TaskSpec::command(["true"]);
    spec.resources.cpu_milli = 1000;
    let mut submitted = 0u64;
    let mut finished = 0u64;
    let mut next_report = report_every;
    let mut entries = 0u64;
    let mut retire_ms: Vec<f64> = Vec::new();
    let mut retired = 0u64;
    let started = Instant::now();
    println!("tasks finished | tasks held | jobs held | RSS MiB | retire entry median ms");
    let mut pending = Vec::new();
    while finished < total {
        now += 1;
        entries += 1;
        let mut commands = Vec::new();
        // Keep about two jobs in flight.
        if submitted < total && submitted - finished < 2 * JOB as u64 {
            commands.push(Command::Submit {
                job: JobSpec {
                    name: "bench".into(),
                    owner: String::new(),
                    tasks: vec![spec.clone(); JOB],
                },
                idempotency: None,
                submitter: None,
                staged: None,
            });
            submitted += JOB as u64;
        }
        for (worker, task, attempt) in pending.drain(..) {
            commands.push(Command::TaskStarted {
                task,
                attempt,
                worker,
                gpus: Vec::new(),
            });
            commands.push(Command::TaskFinished {
                worker,
                report: AttemptReport {
                    task,
                    attempt,
                    outcome: Outcome::Exited { code: 0 },
                    usage: AttemptUsage::default(),
                    result: String::new(),
                    stdout_bytes: 0,
                    stderr_bytes: 0,
                    output_truncated: false,
                    digest: String::new(),
                },
            });
            finished += 1;
        }
        let (_, dispatches) = apply(&mut m, now, commands);
        for d in dispatches {
            if let Dispatch::Start { worker, start } = d {
                pending.push((worker, start.task, start.attempt));
            }
        }
        if entries.is_multiple_of(10) {
            let t = Instant::now();
            let (results, _) = apply(
                &mut m,
                now,
                vec![Command::Retire {
                    keep_ms: u64::MAX,
                    keep_max,
                }],
            );
            retire_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if let Some(CommandResult::Retired { tasks, .. }) = results.first() {
                retired += tasks;
            }
        }
        if finished >= next_report {
            next_report += report_every;
            let s = m.scheduler();
            let held = s.next_task_id().0 - 1 - retired;
            println!(
                "{finished:>14} | {held:>10} | {:>9} | {:>7.1} | {:.2}",
                s.next_job_id().0 - 1 - (retired / JOB as u64),
                rss_mib(),
                median(&mut retire_ms),
            );
            retire_ms.clear();
        }
    }
    println!(
        "{finished} tasks in {:.1} s; {retired} retired",
        started.elapsed().as_secs_f64()
    );
}
