//! Per-attempt cost of the process driver against a bare `std::process::Command`.
//!
//! `cargo bench -p drover-exec --bench spawn [-- --quick] [--root <dir>] [--mode=cgroup|off] [--task-user=USER] [--cpu-quota=off]`
//!
//! Tasks ask for one cpu, as a default task does; `--cpu-quota=off` leaves the cpu
//! controller out (what a spawn cost before cpu quotas, where `cpu` is a hierarchy of
//! its own).
//!
//! `--task-user` runs the tasks as that user (needs root): the user switch makes std
//! fork instead of posix_spawn.
//!
//! Prints, per driver mode, the median over rounds of:
//! `bench=spawn_true mode=<cgroup|off> n=<n> per_task_us=<launch+wait>
//! baseline_std_spawn_us=<Command::new("/bin/true").status()> overhead_us=<difference>
//! launch_us=<launch() alone>`
//! and a parallel variant (`bench=spawn_true_parallel`, 16 in flight) for throughput.

use drover_exec::{CgroupMode, DriverConfig, LaunchSpec, ProcessDriver};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn baseline(n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let s = std::process::Command::new("/bin/true")
            .status()
            .expect("spawn /bin/true");
        assert!(s.success());
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn spec(task: u64, workdir: Option<&std::path::Path>) -> LaunchSpec {
    LaunchSpec {
        task,
        attempt: 1,
        command: vec!["/bin/true".to_string()],
        workdir: workdir.map(|w| w.to_path_buf()),
        cpu_milli: 1000,
        ..LaunchSpec::default()
    }
}

/// What the driver's spawn costs by itself: same settings (clean env, own process
/// group, working directory, piped output), output read to the end, then reaped.
fn std_like_driver(n: usize, cwd: &std::path::Path) -> f64 {
    use std::os::unix::process::CommandExt;
    let t = Instant::now();
    for i in 0..n {
        let out = std::process::Command::new("/bin/true")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/root")
            .env("DROVER_TASK_ID", i.to_string())
            .current_dir(cwd)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn");
        assert!(out.status.success());
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// One fresh directory per attempt: what the default working directory costs.
fn mkdir_cost(n: usize, root: &std::path::Path) -> f64 {
    let base = root.join("mkdir-bench");
    let _ = std::fs::create_dir_all(&base);
    let t = Instant::now();
    for i in 0..n {
        std::fs::create_dir(base.join(i.to_string())).expect("mkdir");
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let _ = std::fs::remove_dir_all(&base);
    per
}

/// Sequential launch+wait; returns (per task µs, launch() µs).
async fn sequential(
    d: &ProcessDriver,
    first_task: u64,
    n: usize,
    workdir: Option<&std::path::Path>,
) -> (f64, f64) {
    let mut in_launch = Duration::ZERO;
    let t = Instant::now();
    for i in 0..n {
        let l = Instant::now();
        let a = d
            .launch(spec(first_task + i as u64, workdir))
            .expect("launch");
        in_launch += l.elapsed();
        let f = a.wait().await;
        assert!(f.outcome.is_success(), "{:?}", f.outcome);
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    (per, in_launch.as_secs_f64() * 1e6 / n as f64)
}

/// Up to `width` attempts in flight; returns µs per task (inverse throughput).
async fn parallel(d: &ProcessDriver, first_task: u64, n: usize, width: usize) -> f64 {
    let t = Instant::now();
    let mut running = std::collections::VecDeque::new();
    for i in 0..n {
        if running.len() == width {
            let h: tokio::task::JoinHandle<drover_exec::Finished> =
                running.pop_front().expect("non-empty");
            assert!(h.await.expect("join").outcome.is_success());
        }
        let a = d.launch(spec(first_task + i as u64, None)).expect("launch");
        running.push_back(tokio::spawn(a.wait()));
    }
    for h in running {
        assert!(h.await.expect("join").outcome.is_success());
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only_mode = std::env::args().find_map(|a| a.strip_prefix("--mode=").map(str::to_string));
    let (n, rounds) = if quick { (200, 3) } else { (2000, 5) };
    // `--root <dir>`: where attempt directories go (default: the temp dir). Compare a
    // disk with tmpfs (/dev/shm) to see what the per-attempt directory costs.
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1))
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let root = base.join(format!("drover-exec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("bench root");
    let task_user = std::env::args()
        .find_map(|a| a.strip_prefix("--task-user=").map(str::to_string))
        .map(|u| drover_exec::TaskUser::lookup(&u).expect("--task-user"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for mode in [CgroupMode::Auto, CgroupMode::Off] {
        match (only_mode.as_deref(), mode) {
            (Some("off"), CgroupMode::Auto) | (Some("cgroup"), CgroupMode::Off) => continue,
            _ => {}
        }
        let mut cfg = DriverConfig::new(&root, format!("bench-{}", std::process::id()));
        cfg.cgroups = mode;
        // The "given workdir" variant runs in the root itself, a host path.
        cfg.allowed_paths = vec![root.clone()];
        cfg.task_user = task_user.clone();
        cfg.cpu_quota = !std::env::args().any(|a| a == "--cpu-quota=off");
        let d = ProcessDriver::new(cfg).expect("driver");
        let label = if d.cgroups_active() { "cgroup" } else { "off" };
        eprintln!(
            "driver: {} (with cgroups, spawner threads wait inside idle attempt cgroups: a spawn moves no thread when one is ready); tasks as {}",
            d.mode_description(),
            task_user
                .as_ref()
                .map_or("the agent's user", |u| u.name.as_str())
        );
        if mode == CgroupMode::Auto && !d.cgroups_active() {
            eprintln!("note: cgroups unavailable here: {}", d.mode_description());
        }
        let (mut per, mut launch, mut base, mut par) = (vec![], vec![], vec![], vec![]);
        let (mut per_wd, mut like, mut mkdir) = (vec![], vec![], vec![]);
        let mut task = 0u64;
        // Warm-up: page cache, the blocking pool, cgroup locks.
        rt.block_on(sequential(&d, 1_000_000, 50, None));
        let mut overhead = vec![];
        // Each round interleaves blocks of 100 of every variant, so they all see the
        // same background load (this machine is shared); the figures are medians
        // over rounds of the per-round averages.
        let block = 100.min(n);
        for _ in 0..rounds {
            let (mut b, mut p, mut l, mut w, mut k, mut m) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            for _ in 0..n / block {
                b += baseline(block);
                let (pp, ll) = rt.block_on(sequential(&d, task, block, None));
                task += block as u64;
                p += pp;
                l += ll;
                let (pw, _) = rt.block_on(sequential(&d, task, block, Some(&root)));
                task += block as u64;
                w += pw;
                k += std_like_driver(block, &root);
                m += mkdir_cost(block, &root);
            }
            let blocks = (n / block) as f64;
            base.push(b / blocks);
            per.push(p / blocks);
            launch.push(l / blocks);
            per_wd.push(w / blocks);
            like.push(k / blocks);
            mkdir.push(m / blocks);
            overhead.push((p - b) / blocks);
            par.push(rt.block_on(parallel(&d, task, n, 16)));
            task += n as u64;
        }
        println!(
            "bench=spawn_true mode={label} n={n} rounds={rounds} per_task_us={:.0} baseline_std_spawn_us={:.0} overhead_us={:.0} launch_us={:.0}",
            median(per),
            median(base.clone()),
            median(overhead),
            median(launch),
        );
        println!(
            "bench=spawn_true_given_workdir mode={label} n={n} per_task_us={:.0} std_spawn_same_settings_us={:.0} mkdir_us={:.0}",
            median(per_wd),
            median(like),
            median(mkdir),
        );
        println!(
            "bench=spawn_true_parallel mode={label} n={n} in_flight=16 per_task_us={:.0} baseline_std_spawn_us={:.0}",
            median(par),
            median(base),
        );
        drop(d);
        let _ = std::fs::remove_dir_all(&root);
    }
}
