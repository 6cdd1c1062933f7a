//! The autoscaler with the Docker provider, for real: the worker image is built from
//! this build's `drover` by `scripts/build-worker-image.sh`, a server runs with
//! `--autoscale docker`, a burst is submitted, worker containers appear (a big one for
//! the task no small worker could hold), the tasks finish, and the idle workers are
//! drained through the log and their containers removed.
//!
//! Needs a Docker engine: without one the test fails, unless DROVER_SKIP_DOCKER=1 (then
//! it says it skipped). Containers are found by the cluster's label and removed however
//! the test ends.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

const IMAGE: &str = "drover-worker:autoscale-test";

/// Removes this cluster's containers when the test ends, passed or not.
struct Containers {
    filter: String,
}

impl Containers {
    /// (id, labels as `k=v,...`, state) of each container of the cluster.
    fn list(&self) -> Vec<(String, String, String)> {
        let out = Command::new("docker")
            .args(["ps", "-a", "--no-trunc", "--filter", &self.filter])
            .args(["--format", "{{.ID}}\t{{.Labels}}\t{{.State}}"])
            .output()
            .expect("docker ps");
        assert!(out.status.success(), "docker ps: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids: Vec<String> = self.list().into_iter().map(|(id, _, _)| id).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// Docker is there, or the test says loudly why not.
fn docker_or_skip() -> bool {
    if std::env::var("DROVER_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: DROVER_SKIP_DOCKER=1: the autoscaler's Docker test did not run");
        return false;
    }
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no Docker engine answers `docker info`: install and start Docker, or set DROVER_SKIP_DOCKER=1 to skip this test"
    );
    true
}

fn build_image() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/build-worker-image.sh"
    );
    let out = Command::new(script)
        .arg(DROVER)
        .env("DROVER_WORKER_IMAGE", IMAGE)
        // The tasks below run `sleep`; a scratch image has nothing but drover.
        .env("DROVER_WORKER_IMAGE_TOOLS", "sleep")
        .output()
        .expect("run scripts/build-worker-image.sh");
    assert!(
        out.status.success(),
        "building the image failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn decisions(status: &Value) -> Vec<(String, String)> {
    status["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    assert!(d["error"].is_null(), "a decision failed: {d}");
                    (
                        d["action"].as_str().unwrap_or_default().to_string(),
                        d["worker"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A server autoscaling with Docker: 0 to 3 workers of 1 cpu (or 3 cpus for what 1
/// cannot hold), idle ones drained after 3 s. The cluster comes second so that it is
/// dropped first: its server is killed before the containers are removed, and cannot
/// start another one in between.
fn autoscaled(test: &str) -> (Containers, Cluster) {
    let c = Cluster::start_with(
        test,
        &[
            // The default worker timeout: the workers keep their default kill grace.
            "--autoscale",
            "docker",
            "--autoscale-min",
            "0",
            "--autoscale-max",
            "3",
            "--autoscale-cooldown",
            "3s",
            "--autoscale-size",
            "1:256M",
            "--autoscale-size",
            "3:512M",
            "--autoscale-image",
            IMAGE,
        ],
    );
    let status = c.get_ok("/v1/autoscale");
    assert_eq!(status["enabled"], true, "{status}");
    assert_eq!(status["leader"], true, "{status}");
    let filter = status["instance_filter"]
        .as_str()
        .unwrap_or_else(|| panic!("no instance filter: {status}"))
        .to_string();
    let containers = Containers { filter };
    assert!(
        containers.list().is_empty(),
        "a fresh cluster has no containers"
    );
    (containers, c)
}

#[test]
fn a_burst_brings_workers_up_and_they_drain_and_go_away() {
    if !docker_or_skip() {
        return;
    }
    build_image();
    let (containers, c) = autoscaled("autoscale");

    // The burst: five 1-cpu tasks and one that needs 2 cpus, which no 1-cpu worker
    // could hold: it asks for the bigger size.
    let mut ids: Vec<u64> = (0..5)
        .map(|_| c.submit(json!({"command": ["sleep", "2"]})))
        .collect();
    ids.push(c.submit(json!({"command": ["sleep", "2"], "resources": {"cpu_milli": 2000}})));

    // Workers appear: containers of this cluster, never more than the maximum.
    let mut seen = BTreeSet::new();
    let mut big = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished = Vec::new();
    while finished.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "the burst did not finish in 120 s: {}\n{}\n{}",
            c.get_ok("/v1/autoscale"),
            c.get_ok("/v1/tasks"),
            c.logs()
        );
        let list = containers.list();
        assert!(
            list.len() <= 3,
            "more containers than the maximum: {list:?}"
        );
        for (id, labels, _) in &list {
            seen.insert(id.clone());
            big |= labels.contains("drover.cpu_milli=3000");
        }
        finished = ids
            .iter()
            .map(|&id| c.task(id))
            .filter(|t| t.state.is_final())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
    }
    for t in &finished {
        assert_eq!(
            t.state.to_string(),
            "succeeded",
            "{t:#?}\n{}",
            c.get_ok("/v1/autoscale")
        );
    }
    assert!(
        seen.len() >= 2,
        "a burst of six tasks got {} container(s)",
        seen.len()
    );
    assert!(
        big,
        "no worker of the bigger size was started for the 2-cpu task"
    );
    // The tasks ran on the managed workers, which joined with their join tokens.
    let auto_workers: Vec<String> = c
        .workers_info()
        .into_iter()
        .filter(|w| w.name.starts_with("drover-auto-"))
        .map(|w| w.name)
        .collect();
    assert!(auto_workers.len() >= 2, "{auto_workers:?}");
    for t in &finished {
        let ran_on = t.attempts.last().map(|a| a.worker).expect("an attempt");
        let name = c
            .workers_info()
            .into_iter()
            .find(|w| w.id == ran_on)
            .map(|w| w.name)
            .unwrap_or_default();
        assert!(name.starts_with("drover-auto-"), "task ran on {name}");
    }
    let cli = c.cli_ok(&["autoscale"]).stdout;
    assert!(cli.contains("provider docker: 0 to 3 workers"), "{cli}");
    assert!(cli.contains("start drover-auto-"), "{cli}");

    // Idle past the cooldown: every worker is drained, then stopped; no container is
    // left of this cluster.
    poll(
        "the idle workers' containers to go away",
        Duration::from_secs(90),
        || containers.list().is_empty().then_some(()),
        || format!("{:?}\n{}", containers.list(), c.get_ok("/v1/autoscale")),
    );
    let status = c.get_ok("/v1/autoscale");
    let made = decisions(&status);
    for worker in made.iter().filter(|(a, _)| a == "start").map(|(_, w)| w) {
        let drain = made.iter().position(|d| d.0 == "drain" && d.1 == *worker);
        let stop = made.iter().position(|d| d.0 == "stop" && d.1 == *worker);
        assert!(
            drain.is_some() && stop.is_some() && drain < stop,
            "{worker} was not drained before it was stopped: {made:?}"
        );
    }
    // Stopped workers' credentials are revoked.
    let listed = c.get_ok("/v1/worker-credentials").to_string();
    for w in &auto_workers {
        assert!(
            !listed.contains(&format!("\"{w}\"")),
            "{w} kept its credential: {listed}"
        );
    }
}

#[test]
fn a_restarted_server_finds_the_containers_it_started_and_scales_them_down() {
    if !docker_or_skip() {
        return;
    }
    build_image();
    let (containers, mut c) = autoscaled("autoscale-restart");
    let ids: Vec<u64> = (0..2)
        .map(|_| c.submit(json!({"command": ["sleep", "4"]})))
        .collect();
    poll(
        "a task to run on a managed worker",
        Duration::from_secs(60),
        || {
            ids.iter()
                .any(|&id| c.task(id).state.to_string() == "running")
                .then_some(())
        },
        || format!("{}\n{}", c.get_ok("/v1/autoscale"), c.logs()),
    );
    // (The status lists what the last look found: a worker can join and start a task
    // before the next one.)
    let before: BTreeSet<String> = poll(
        "the status to list the managed workers",
        SLOW,
        || {
            let names: BTreeSet<String> = c.get_ok("/v1/autoscale")["workers"]
                .as_array()
                .expect("workers")
                .iter()
                .filter(|w| w["state"] == "active")
                .map(|w| w["name"].as_str().unwrap_or_default().to_string())
                .collect();
            (!names.is_empty()).then_some(names)
        },
        || c.get_ok("/v1/autoscale").to_string(),
    );

    // kill -9 and restart: the new leader has no memory of what it started, only the
    // containers' labels and the log.
    c.kill_server();
    c.restart_server();
    poll(
        "the restarted server to list the containers started before",
        SLOW,
        || {
            let listed: BTreeSet<String> = c.get_ok("/v1/autoscale")["workers"]
                .as_array()
                .expect("workers")
                .iter()
                .map(|w| w["name"].as_str().unwrap_or_default().to_string())
                .collect();
            before.is_subset(&listed).then_some(())
        },
        || format!("{before:?}\n{}", c.get_ok("/v1/autoscale")),
    );
    for &id in &ids {
        let t = c.wait_final(id, Duration::from_secs(60));
        assert_eq!(t.state.to_string(), "succeeded", "{t:#?}\n{}", c.logs());
    }
    poll(
        "the idle workers' containers to go away after the restart",
        Duration::from_secs(90),
        || containers.list().is_empty().then_some(()),
        || format!("{:?}\n{}", containers.list(), c.get_ok("/v1/autoscale")),
    );
    // Drained (by the new leader) before they were stopped.
    let made = decisions(&c.get_ok("/v1/autoscale"));
    for worker in &before {
        let drain = made.iter().position(|d| d.0 == "drain" && d.1 == *worker);
        let stop = made.iter().position(|d| d.0 == "stop" && d.1 == *worker);
        assert!(
            drain.is_some() && drain < stop,
            "{worker} was not drained before it was stopped: {made:?}"
        );
    }
}
