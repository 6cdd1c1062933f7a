//! Drover core benchmark. Prints one summary line per case.
//!
//!     cargo bench -p drover-sched --bench core              # full scale
//!     cargo bench -p drover-sched --bench core -- --quick   # 1/100 scale (CI smoke run)
//!
//! (`DROVER_BENCH_QUICK=1` works too.) Memory figures come from /proc/self/status
//! (VmHWM = peak RSS, VmRSS = current); reading it is the bench's business, never the
//! library's.

use drover_sched::{Action, Event, Scheduler, SchedulerConfig};
use drover_types::{
    Attempt, DepRef, JobSpec, Millis, Outcome, PlacementPolicyKind, PolicyConfig, QueuePolicyKind,
    Resources, TaskId, TaskSpec, TaskState, WorkerId, WorkerSpec,
};
use std::time::Instant;

const GIB: u64 = 1 << 30;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time this thread has run, in seconds (from /proc/thread-self/schedstat). The
/// machine may be shared: rates per CPU-second are what the code costs, rates per
/// wall-second what it got.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1e9
}

/// A stopwatch measuring both wall time and CPU time.
struct Watch(Instant, f64);
impl Watch {
    fn start() -> Watch {
        Watch(Instant::now(), cpu_secs())
    }
    /// (wall, cpu) seconds since start.
    fn stop(&self) -> (f64, f64) {
        (self.0.elapsed().as_secs_f64(), cpu_secs() - self.1)
    }
}

/// A rate per CPU second, or `na` when the interval is too short for the kernel's
/// accounting to measure.
fn per_cpu_s(n: u64, cpu: f64) -> String {
    if cpu < 0.05 {
        "na".to_string()
    } else {
        format!("{:.0}", n as f64 / cpu)
    }
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

/// A tiny deterministic PRNG (xorshift) for workload shapes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CPU_SHAPES: [u32; 4] = [500, 1000, 2000, 4000];
const MEM_SHAPES: [u64; 4] = [GIB / 2, GIB, 2 * GIB, 8 * GIB];

/// A task of mixed priority and resource shape; each one its own spec (no sharing), as
/// if every task had been submitted separately.
fn mixed_task(rng: &mut Rng, owners: u64) -> TaskSpec {
    TaskSpec {
        resources: Resources {
            cpu_milli: CPU_SHAPES[rng.below(4) as usize],
            memory_bytes: MEM_SHAPES[rng.below(4) as usize],
            ..Resources::default()
        },
        priority: rng.below(11) as i32 - 5,
        expected_runtime_ms: Some(1_000 + rng.below(100_000)),
        owner: format!("owner{}", rng.below(owners)),
        ..TaskSpec::command(["/usr/bin/work", "--input", "data.bin"])
    }
}

/// Heterogeneous workers: 8..64 cores, 4 GiB per core.
fn join_workers(s: &mut Scheduler, n: usize, rng: &mut Rng) {
    for i in 0..n {
        let cores = [8u32, 16, 32, 64][rng.below(4) as usize];
        let spec = WorkerSpec {
            name: format!("worker-{i:05}"),
            capacity: Resources {
                cpu_milli: cores * 1000,
                memory_bytes: cores as u64 * 4 * GIB,
                ..Resources::default()
            },
            ..WorkerSpec::default()
        };
        s.apply(
            Millis(1),
            Event::WorkerJoin {
                spec,
                running: vec![],
            },
        )
        .unwrap();
    }
}

fn submit(s: &mut Scheduler, now: u64, tasks: Vec<TaskSpec>) {
    s.apply(
        Millis(now),
        Event::Submit {
            job: JobSpec {
                tasks,
                ..JobSpec::default()
            },
        },
    )
    .unwrap();
}

/// Submits `n` mixed tasks in jobs of 10,000; returns (wall, cpu) seconds spent in the
/// core (building the specs is not counted).
fn submit_mixed(s: &mut Scheduler, n: usize, rng: &mut Rng, owners: u64) -> (f64, f64) {
    let (mut wall, mut cpu) = (0.0, 0.0);
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let tasks: Vec<TaskSpec> = (0..k).map(|_| mixed_task(rng, owners)).collect();
        let t = Watch::start();
        submit(s, 2, tasks);
        let (w, c) = t.stop();
        wall += w;
        cpu += c;
        left -= k;
    }
    (wall, cpu)
}

struct RunStats {
    rounds: u64,
    placements: u64,
    schedule_secs: f64,
    schedule_cpu: f64,
    events_secs: f64,
    events_cpu: f64,
}

/// Runs rounds until nothing is left to place; every start is acknowledged and the
/// attempt completed at once.
fn run_to_completion(s: &mut Scheduler, mut now: u64) -> RunStats {
    let mut st = RunStats {
        rounds: 0,
        placements: 0,
        schedule_secs: 0.0,
        schedule_cpu: 0.0,
        events_secs: 0.0,
        events_cpu: 0.0,
    };
    loop {
        now += 1;
        let t = Watch::start();
        let plan = s.schedule(Millis(now));
        let (w, c) = t.stop();
        st.schedule_secs += w;
        st.schedule_cpu += c;
        st.rounds += 1;
        if plan.actions.is_empty() {
            break;
        }
        let t = Watch::start();
        for a in plan.actions {
            if let Action::Start {
                task,
                attempt,
                worker,
            } = a
            {
                st.placements += 1;
                s.apply(
                    Millis(now),
                    Event::TaskStarted {
                        task,
                        attempt,
                        worker,
                        gpus: Vec::new(),
                    },
                )
                .unwrap();
                s.apply(
                    Millis(now),
                    Event::TaskFinished {
                        task,
                        attempt,
                        worker,
                        outcome: Outcome::Exited { code: 0 },
                    },
                )
                .unwrap();
            }
        }
        let (w, c) = t.stop();
        st.events_secs += w;
        st.events_cpu += c;
    }
    st
}

fn memory_case(scale: usize) {
    let n = 1_000_000 / scale;
    let before = status_kib("VmRSS:");
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut rng = Rng(7);
    let (wall, cpu) = submit_mixed(&mut s, n, &mut rng, 16);
    let after = status_kib("VmRSS:");
    assert_eq!(s.counts().of(TaskState::Ready) as usize, n);
    println!(
        "bench=queued_1m tasks={n} rss_mib={} bytes_per_task={} submit_tasks_per_s={:.0} submit_tasks_per_cpu_s={} peak_rss_mib={}",
        mib(after.saturating_sub(before)),
        (after.saturating_sub(before) * 1024) / n as u64,
        n as f64 / wall,
        per_cpu_s(n as u64, cpu),
        mib(status_kib("VmHWM:"))
    );
}

fn lifecycle_case(scale: usize) {
    let n = 1_000_000 / scale;
    let w = (1_000 / scale).max(10);
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut rng = Rng(11);
    join_workers(&mut s, w, &mut rng);
    let (submit_secs, submit_cpu) = submit_mixed(&mut s, n, &mut rng, 16);
    let st = run_to_completion(&mut s, 10);
    assert_eq!(s.counts().of(TaskState::Succeeded) as usize, n);
    let total = submit_secs + st.schedule_secs + st.events_secs;
    let total_cpu = submit_cpu + st.schedule_cpu + st.events_cpu;
    println!(
        "bench=lifecycle_1m tasks={n} workers={w} rounds={} tasks_per_s={:.0} tasks_per_cpu_s={} placements_per_s={:.0} placements_per_cpu_s={} submit_s={:.2} schedule_s={:.2} events_s={:.2} peak_rss_mib={} rss_mib={}",
        st.rounds,
        n as f64 / total,
        per_cpu_s(n as u64, total_cpu),
        st.placements as f64 / st.schedule_secs,
        per_cpu_s(st.placements, st.schedule_cpu),
        submit_secs,
        st.schedule_secs,
        st.events_secs,
        mib(status_kib("VmHWM:")),
        mib(status_kib("VmRSS:"))
    );
}

fn dag_case(scale: usize) {
    let n = 100_000 / scale;
    let w = (1_000 / scale).max(10);
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut rng = Rng(13);
    join_workers(&mut s, w, &mut rng);
    // Jobs of 100 tasks: 90 independent, and 10 with dependencies: a chain of three,
    // a fan-out of four from one task, a fan-in of those four, a fan-in of nine, and a
    // final task after both fan-ins.
    let t0 = Watch::start();
    let mut deps_tasks = 0;
    for j in 0..n / 100 {
        let key = |i: usize| format!("j{j}-{i}");
        let mut tasks: Vec<TaskSpec> = (0..100).map(|_| mixed_task(&mut rng, 4)).collect();
        for (i, t) in tasks.iter_mut().enumerate() {
            t.key = Some(key(i));
        }
        let set = |t: &mut TaskSpec, d: &[usize]| {
            t.after = d.iter().map(|&i| DepRef::Key(key(i))).collect()
        };
        set(&mut tasks[90], &[0]);
        set(&mut tasks[91], &[90]);
        set(&mut tasks[92], &[91]);
        for t in &mut tasks[93..97] {
            set(t, &[1]);
        }
        set(&mut tasks[97], &[93, 94, 95, 96]);
        set(&mut tasks[98], &[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        set(&mut tasks[99], &[97, 98]);
        deps_tasks += 10;
        submit(&mut s, 2, tasks);
    }
    let st = run_to_completion(&mut s, 10);
    let (secs, cpu) = t0.stop();
    assert_eq!(s.counts().of(TaskState::Succeeded) as usize, n / 100 * 100);
    println!(
        "bench=dag_100k tasks={} with_deps={deps_tasks} workers={w} rounds={} tasks_per_s={:.0} tasks_per_cpu_s={} total_s={secs:.2} peak_rss_mib={}",
        n / 100 * 100,
        st.rounds,
        (n / 100 * 100) as f64 / secs,
        per_cpu_s((n / 100 * 100) as u64, cpu),
        mib(status_kib("VmHWM:"))
    );
}

fn policy(queue: QueuePolicyKind, placement: PlacementPolicyKind) -> PolicyConfig {
    PolicyConfig {
        queue,
        placement,
        ..PolicyConfig::default()
    }
}

fn queue_kinds() -> Vec<QueuePolicyKind> {
    vec![
        QueuePolicyKind::Fcfs,
        QueuePolicyKind::Priority { aging_ms: 60_000 },
        QueuePolicyKind::ShortestJobFirst,
        QueuePolicyKind::FairShare {
            weights: [("owner1".to_string(), 3)].into(),
        },
        // Every term, with the per-owner split (fairshare) and a label lookup.
        QueuePolicyKind::Multifactor {
            factors: drover_types::MultifactorWeights::parse(
                "priority=1000,age=1,fairshare=100,size=-1,label:business_value=10",
            )
            .unwrap(),
        },
    ]
}

fn switch_case(scale: usize) {
    let n = 1_000_000 / scale;
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut rng = Rng(17);
    submit_mixed(&mut s, n, &mut rng, 16);
    let mut times = Vec::new();
    for q in queue_kinds()
        .into_iter()
        .chain([QueuePolicyKind::default()])
    {
        let name = q.name();
        let t = Instant::now();
        s.apply(
            Millis(3),
            Event::SetPolicy {
                policy: policy(q, PlacementPolicyKind::BinPack),
            },
        )
        .unwrap();
        times.push(format!("{name}_ms={:.0}", t.elapsed().as_secs_f64() * 1e3));
    }
    assert_eq!(s.counts().of(TaskState::Ready) as usize, n);
    // The pending reason of the last task queued (the most expensive to explain),
    // with one worker joined so that the reason counts the tasks ahead.
    join_workers(&mut s, 1, &mut rng);
    let t = Instant::now();
    let reason = s
        .pending_reason(TaskId(n as u64), Millis(3))
        .unwrap_or_default();
    times.push(format!(
        "pending_reason_us={:.0}",
        t.elapsed().as_secs_f64() * 1e6
    ));
    assert!(!reason.is_empty());
    println!(
        "bench=switch_1m queued={n} {} peak_rss_mib={}",
        times.join(" "),
        mib(status_kib("VmHWM:"))
    );
}

/// Per-decision cost: with `queued` tasks waiting and 1,000 workers with room for
/// `decisions` of them, one round places `decisions` tasks; reports ns per placement.
/// The placed tasks are then completed and replaced (untimed) so the queue stays at
/// its size for the next policy.
fn decision_case(scale: usize) {
    // The number of queued tasks grows at 1,000 workers; then the number of workers
    // grows at 100,000 queued tasks.
    let runs = [
        (10_000usize, 1_000usize),
        (100_000, 1_000),
        (1_000_000, 1_000),
        (100_000, 100),
        (100_000, 10_000),
    ];
    for (queued, workers) in runs {
        let queued = queued / scale;
        let workers = (workers / scale).max(10);
        let decisions = (queued / 10).min(10_000);
        let mut s = Scheduler::new(SchedulerConfig::default());
        let mut rng = Rng(19);
        submit_mixed(&mut s, queued, &mut rng, 16);
        // Workers with room for exactly `decisions` one-core tasks... of mixed shapes:
        // enough CPU for roughly `decisions` average tasks.
        let avg_cpu: u64 = CPU_SHAPES.iter().map(|&c| c as u64).sum::<u64>() / 4;
        let per_worker = (decisions as u64 * avg_cpu / workers as u64).max(4000) as u32;
        for i in 0..workers {
            let spec = WorkerSpec {
                name: format!("w{i}"),
                capacity: Resources {
                    cpu_milli: per_worker,
                    memory_bytes: 1 << 50,
                    ..Resources::default()
                },
                ..WorkerSpec::default()
            };
            s.apply(
                Millis(1),
                Event::WorkerJoin {
                    spec,
                    running: vec![],
                },
            )
            .unwrap();
        }
        let mut cases: Vec<PolicyConfig> = queue_kinds()
            .into_iter()
            .map(|q| policy(q, PlacementPolicyKind::BinPack))
            .collect();
        for p in [PlacementPolicyKind::Spread, PlacementPolicyKind::RoundRobin] {
            cases.push(policy(QueuePolicyKind::default(), p));
        }
        let mut now = 10;
        for pc in cases {
            let (qn, pn) = (pc.queue.name(), pc.placement.name());
            s.apply(Millis(now), Event::SetPolicy { policy: pc })
                .unwrap();
            // Three rounds; the fastest is reported (the machine may be shared).
            let (mut best, mut decisions) = (f64::MAX, 0);
            for _ in 0..3 {
                now += 1;
                let t = Instant::now();
                let plan = s.schedule(Millis(now));
                let secs = t.elapsed().as_secs_f64();
                let placed: Vec<(TaskId, Attempt, WorkerId)> = plan
                    .actions
                    .iter()
                    .filter_map(|a| match *a {
                        Action::Start {
                            task,
                            attempt,
                            worker,
                        } => Some((task, attempt, worker)),
                        _ => None,
                    })
                    .collect();
                best = best.min(secs * 1e9 / placed.len().max(1) as f64);
                decisions = placed.len();
                for &(task, attempt, worker) in &placed {
                    s.apply(
                        Millis(now),
                        Event::TaskStarted {
                            task,
                            attempt,
                            worker,
                            gpus: Vec::new(),
                        },
                    )
                    .unwrap();
                    let outcome = Outcome::Exited { code: 0 };
                    s.apply(
                        Millis(now),
                        Event::TaskFinished {
                            task,
                            attempt,
                            worker,
                            outcome,
                        },
                    )
                    .unwrap();
                }
                submit_mixed(&mut s, placed.len(), &mut rng, 16);
            }
            println!(
                "bench=decision queue={qn} placement={pn} queued={queued} workers={workers} decisions={decisions} ns_per_decision={best:.0}"
            );
        }
    }
}

/// A round on a full cluster with 1M queued tasks of 100,000 distinct shapes (memory
/// requests that differ by a few KiB): must cost next to nothing, not one failed
/// search per shape.
fn full_round_case(scale: usize) {
    let n = 1_000_000 / scale;
    let w = (1_000 / scale).max(10);
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut rng = Rng(23);
    join_workers(&mut s, w, &mut rng);
    let mut left = n;
    let mut i = 0u64;
    while left > 0 {
        let k = left.min(10_000);
        let tasks: Vec<TaskSpec> = (0..k)
            .map(|_| {
                i += 1;
                let mut t = mixed_task(&mut rng, 16);
                t.resources.memory_bytes = GIB + (i % 100_000) * 4096;
                t
            })
            .collect();
        submit(&mut s, 2, tasks);
        left -= k;
    }
    let first = s.schedule(Millis(3)).actions.len();
    let t = Instant::now();
    let plan = s.schedule(Millis(4));
    let secs = t.elapsed().as_secs_f64();
    assert!(plan.actions.is_empty());
    println!(
        "bench=full_round queued={} shapes<={} workers={w} placed_first_round={first} full_round_us={:.0}",
        n - first,
        100_000.min(n),
        secs * 1e6
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("DROVER_BENCH_QUICK").is_ok_and(|v| v == "1" || v == "true");
    let scale = if quick { 100 } else { 1 };
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    // Memory first, while the process is fresh.
    if want("queued_1m") {
        memory_case(scale);
    }
    if want("lifecycle_1m") {
        lifecycle_case(scale);
    }
    if want("dag_100k") {
        dag_case(scale);
    }
    if want("switch_1m") {
        switch_case(scale);
    }
    if want("full_round") {
        full_round_case(scale);
    }
    if want("decision") {
        decision_case(scale);
    }
}
