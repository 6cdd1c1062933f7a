//! Isolation end to end with real `drover` processes (as root, on this host's cgroup
//! v1): GPUs handed out by index, never one two running tasks share, named in the
//! task's environment and in `drover status`; a task held to its cpus; what each
//! worker enforces, in `drover workers` and the API. (The pids limit's black-box test
//! is `confinement.rs`, the fork bomb.)

mod common;

use common::*;
use drover_types::{EnforcedLimit, TaskState};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Prints the GPU variables as `CUDA|NVIDIA|ROCR|HIP|DROVER` (`unset` for a missing
/// one), then holds its devices for `hold` seconds.
fn gpu_script(hold: u32) -> String {
    format!(
        "echo \"${{CUDA_VISIBLE_DEVICES-unset}}|${{NVIDIA_VISIBLE_DEVICES-unset}}|${{ROCR_VISIBLE_DEVICES-unset}}|${{HIP_VISIBLE_DEVICES-unset}}|${{DROVER_GPU_IDS-unset}}\"; sleep {hold}"
    )
}

/// The devices a task saw, checking that every variable names the same ones.
fn seen_devices(result: &str) -> Vec<u32> {
    let line = result.trim();
    let parts: Vec<&str> = line.split('|').collect();
    assert_eq!(parts.len(), 5, "{line:?}");
    assert!(
        parts.iter().all(|p| *p == parts[0]),
        "all name the same devices: {line:?}"
    );
    parts[0].split(',').map(|i| i.parse().unwrap()).collect()
}

#[test]
fn two_gpu_tasks_get_disjoint_devices_a_third_waits_and_status_names_them() {
    let mut c = Cluster::start("iso-gpus");
    c.add_worker(
        "w",
        &["--cpus", "8", "--memory", "4G", "--gpu-ids", "0,1,2,3"],
    );
    // Through the three doors: the CLI, the API and a job file.
    let script = gpu_script(4);
    let by_cli: u64 = c
        .cli_ok(&["submit", "--gpus", "2", "--shell", "--", &script])
        .stdout
        .trim()
        .parse()
        .unwrap();
    let by_api = c.submit(json!({
        "command": [script.clone()],
        "shell": true,
        "resources": {"cpu_milli": 1000, "gpus": 2},
    }));
    c.wait_state(by_cli, "running", SLOW);
    c.wait_state(by_api, "running", SLOW);
    let job = c.file("gpu-job.yaml");
    std::fs::write(
        &job,
        format!(
            "tasks:\n  - shell: true\n    gpus: 2\n    command: '{}'\n",
            gpu_script(0)
        ),
    )
    .unwrap();
    let by_file: u64 = c
        .cli_ok(&["submit", "-f", job.to_str().unwrap()])
        .stdout
        .trim()
        .parse()
        .unwrap();
    // Every index of the worker is held: the third waits for one of them to end.
    std::thread::sleep(Duration::from_millis(1000));
    let waiting = c.task(by_file);
    assert!(
        !waiting.state.is_final() && waiting.state != TaskState::Running,
        "{waiting:#?}"
    );
    assert_eq!(c.task(by_cli).state, TaskState::Running);
    assert_eq!(c.task(by_api).state, TaskState::Running);

    let a = c.wait_final(by_cli, SLOW);
    let b = c.wait_final(by_api, SLOW);
    let third = c.wait_final(by_file, SLOW);
    for t in [&a, &b, &third] {
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    }
    let ga = seen_devices(a.result.as_deref().unwrap());
    let gb = seen_devices(b.result.as_deref().unwrap());
    let gc = seen_devices(third.result.as_deref().unwrap());
    assert_eq!((ga.len(), gb.len(), gc.len()), (2, 2, 2));
    let both: BTreeSet<u32> = ga.iter().chain(&gb).copied().collect();
    assert_eq!(
        both,
        BTreeSet::from([0, 1, 2, 3]),
        "disjoint: {ga:?} {gb:?}"
    );
    assert!(gc == ga || gc == gb, "the third got a freed pair: {gc:?}");
    // The attempt records what it was given: API and `drover status`.
    assert_eq!(a.attempts.last().unwrap().gpus, ga);
    let list = ga
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let status = c.cli_ok(&["status", &by_cli.to_string()]).stdout;
    assert!(status.contains(&format!("gpus {list}")), "{status}");

    // A task asking for none, on a worker with GPUs, is told it has none.
    let none = c.submit(json!({"command": [gpu_script(0)], "shell": true}));
    let n = c.wait_final(none, SLOW);
    assert_eq!(n.result.as_deref(), Some("|void|||\n"), "{n:#?}");
    assert!(n.attempts.last().unwrap().gpus.is_empty());

    // What the worker hands out and enforces: the API and `drover workers`.
    let w = &c.workers_info()[0];
    assert_eq!(w.capacity.gpus, 4);
    assert_eq!(w.isolation.gpu_ids, vec![0, 1, 2, 3]);
    assert_eq!(
        w.isolation.enforced,
        vec![
            EnforcedLimit::Memory,
            EnforcedLimit::Cpu,
            EnforcedLimit::Pids
        ],
        "{:?}",
        w.isolation
    );
    let table = c.cli_ok(&["workers"]).stdout;
    assert!(table.contains("ISOLATION"), "{table}");
    assert!(table.contains("memory,cpu,pids gpus 0,1,2,3"), "{table}");
}

#[test]
fn gpus_are_found_with_nvidia_smi_and_a_worker_without_cgroups_says_so() {
    let mut c = Cluster::start("iso-discover");
    // No GPU here: a stand-in nvidia-smi on the worker's PATH answers like one.
    let bin = c.file("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(
        &smi,
        "#!/bin/sh\n[ \"$1 $2\" = \"--query-gpu=index --format=csv,noheader\" ] || exit 2\nprintf '0\\n1\\n'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.worker_env.push(("PATH".into(), path));
    let name = c.add_worker("w", &["--cpus", "2", "--memory", "2G", "--no-cgroups"]);
    let w = c
        .workers_info()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap();
    assert_eq!(w.capacity.gpus, 2);
    assert_eq!(w.isolation.gpu_ids, vec![0, 1]);
    assert!(w.isolation.enforced.is_empty(), "{:?}", w.isolation);
    assert!(
        w.isolation
            .mechanism
            .starts_with("none: no writable cgroup hierarchy"),
        "{:?}",
        w.isolation
    );
    let table = c.cli_ok(&["workers"]).stdout;
    assert!(table.contains("none gpus 0,1"), "{table}");
    assert!(
        table.contains(&format!("w1 {name}: none: no writable cgroup hierarchy")),
        "{table}"
    );
    // It still runs tasks, GPUs included.
    let t = c.submit(json!({
        "command": [gpu_script(0)],
        "shell": true,
        "resources": {"cpu_milli": 500, "gpus": 1},
    }));
    let t = c.wait_final(t, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(seen_devices(t.result.as_deref().unwrap()).len(), 1);
}

#[test]
fn a_task_asking_half_a_cpu_uses_about_half_a_core() {
    let mut c = Cluster::start("iso-cpu");
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);
    // Two busy loops for 2 s: unconfined they would take both cores.
    let id = c.submit(json!({
        "command": ["for i in 1 2; do (while :; do :; done) & p=\"$p $!\"; done; sleep 2; kill $p"],
        "shell": true,
        "resources": {"cpu_milli": 500},
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    let usage = t.usage.expect("usage");
    let wall = t.duration_ms.expect("duration").max(1);
    let share = usage.cpu_time_ms as f64 / wall as f64;
    eprintln!(
        "cpus 0.5, two busy loops: {} ms cpu over {wall} ms = {share:.2} of a core",
        usage.cpu_time_ms
    );
    assert!(share < 0.7, "held near half a core: {share:.2}");
    assert!(usage.cpu_time_ms > 100, "it did run: {usage:?}");
}
