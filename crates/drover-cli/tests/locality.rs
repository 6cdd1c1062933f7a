//! Live data locality and load-aware placement, end to end: a real server, two real
//! workers. A task writes a file into its worker's data directory; the worker scans
//! it and the key reaches the log; later tasks that read it (given by the CLI, the API
//! and a job file) land on that worker. Then, with `load-aware` placement, the holder
//! is kept busy by a CPU-burning task that reserves little, and a new task lands on
//! the idle worker (where bin-pack would have put it on the busy one).

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::json;

fn worker_id(c: &Cluster, name: &str) -> drover_types::WorkerId {
    c.workers_info()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no worker {name}"))
        .id
}

fn placed_on(c: &Cluster, task: u64) -> drover_types::WorkerId {
    let t = c.task(task);
    t.attempts.last().unwrap_or_else(|| panic!("{t:#?}")).worker
}

#[test]
fn tasks_follow_their_input_and_load_aware_placement_avoids_the_busy_worker() {
    let mut c = Cluster::start("locality");
    // `other` joins first: with both idle, bin-pack (the default) picks it, so a task
    // landing on `holder` is locality's doing.
    let other = c.add_worker("other", &["--cpus", "1", "--memory", "2G"]);
    let holder = c.add_worker(
        "holder",
        &["--cpus", "1", "--memory", "2G", "--label", "box=holder"],
    );
    let (other_id, holder_id) = (worker_id(&c, &other), worker_id(&c, &holder));

    // A task on `holder` leaves a file in its data directory.
    let writer = c.submit(json!({
        "command": ["printf 'from the holder' > \"$DROVER_DATA_DIR/part1\""],
        "shell": true,
        "constraints": [{"key": "box", "op": "eq", "values": ["holder"]}],
    }));
    let t = c.wait_final(writer, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    // The worker rescans when the attempt ends; its next heartbeat carries the key, and
    // the leader logs it (`WorkerUpdate`).
    c.poll("the holder to advertise part1", SLOW, || {
        c.workers_info()
            .into_iter()
            .find(|w| w.id == holder_id && w.data_keys.iter().any(|k| k == "part1"))
    });
    let other_info = c
        .workers_info()
        .into_iter()
        .find(|w| w.id == other_id)
        .unwrap();
    assert!(other_info.data_keys.is_empty(), "{other_info:#?}");
    let workers = c.cli_ok(&["workers"]).stdout;
    assert!(
        workers.contains("LOAD") && workers.contains("DATA KEYS"),
        "{workers}"
    );

    // Through the CLI: `drover submit --input part1`.
    let out = c.cli_ok(&[
        "submit",
        "--input",
        "part1",
        "--shell",
        "--",
        "cat \"$DROVER_DATA_DIR/part1\"",
    ]);
    let by_cli: u64 = out.stdout.trim().parse().expect("a task id");
    c.wait_final(by_cli, SLOW);
    // Through the API (one at a time: each takes the holder's only cpu).
    let by_api = c.submit(json!({
        "command": ["cat \"$DROVER_DATA_DIR/part1\""],
        "shell": true,
        "inputs": ["part1"],
    }));
    for id in [by_cli, by_api] {
        let t = c.wait_final(id, SLOW);
        assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        assert_eq!(placed_on(&c, id), holder_id, "task {id}: {t:#?}");
        assert_eq!(t.result.as_deref(), Some("from the holder"), "{t:#?}");
        assert_eq!(
            t.placement.as_deref(),
            Some(format!("placed on {holder}: holds input part1").as_str()),
            "{t:#?}"
        );
    }
    let status = c.cli_ok(&["status", &by_cli.to_string()]).stdout;
    assert!(
        status.contains(&format!("placement: placed on {holder}: holds input part1")),
        "{status}"
    );
    // Through a job file: `drover run` prints the file's content, which only the
    // holder has.
    let job = c.file("reads.yaml");
    std::fs::write(
        &job,
        "tasks:\n  - command: cat \"$DROVER_DATA_DIR/part1\"\n    shell: true\n    inputs: [part1]\n",
    )
    .unwrap();
    let out = c.cli_ok(&["run", "-f", job.to_str().unwrap()]);
    assert_eq!(out.stdout, "from the holder", "{out}");

    // Load-aware: the holder burns CPU in a task that reserves a tenth of a core.
    let out = c.cli_ok(&["policy", "--placement", "load-aware"]);
    assert!(out.stdout.contains("load-aware"), "{out}");
    let burner = c.submit(json!({
        "command": ["while :; do :; done"],
        "shell": true,
        "constraints": [{"key": "box", "op": "eq", "values": ["holder"]}],
        "resources": {"cpu_milli": 100},
    }));
    c.wait_state(burner, "running", SLOW);
    // Its measured usage reaches the log within a few heartbeats (a 10 % move of
    // the worker's capacity, at most every 5 s).
    // (1-cpu workers: a move of 100 millicores is logged; on a busy test machine the
    // burner may get little more than a quarter of a core.)
    let busy = c.poll("the holder's load to be logged", SLOW, || {
        c.workers_info()
            .into_iter()
            .find(|w| w.id == holder_id && w.load.cpu_milli >= 100)
    });
    assert!(busy.load_permille >= 100, "{busy:#?}");
    let idle = c
        .workers_info()
        .into_iter()
        .find(|w| w.id == other_id)
        .unwrap();
    assert!(
        idle.load_permille < busy.load_permille,
        "{idle:#?} {busy:#?}"
    );
    // Bin-pack would choose the holder here (0.9 cpu free against 1, and the task
    // takes 0.1);
    // load-aware chooses the idle worker.
    let next = c.submit(json!({"command": ["true"], "resources": {"cpu_milli": 100}}));
    let t = c.wait_final(next, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(placed_on(&c, next), other_id, "{t:#?}");
    let status = c.cli_ok(&["status", &next.to_string()]).stdout;
    assert!(
        status.contains(&format!(
            "placement: placed on {other} by load-aware placement"
        )),
        "{status}"
    );
    let workers = c.cli_ok(&["workers"]).stdout;
    assert!(workers.contains('%'), "the load column: {workers}");

    c.cli_ok(&["cancel", &burner.to_string()]);
    c.wait_final(burner, SLOW);
}
