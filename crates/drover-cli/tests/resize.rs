//! Dynamic resources end to end: real server and worker processes, tasks that resize
//! themselves with `drover-task` over their agent's socket, the HTTP route, the CLI,
//! a job file, and `drover status`.

mod common;

use common::*;
use drover_types::TaskState;
use serde_json::json;
use std::time::Duration;

/// The `drover-task` binary, by absolute path (tasks run with a minimal PATH).
fn drover_task() -> String {
    env!("CARGO_BIN_EXE_drover-task").to_string()
}

/// The shell words that print the task's own cgroup memory limit.
const OWN_LIMIT: &str = "cat /sys/fs/cgroup/memory$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)/memory.limit_in_bytes";

#[test]
fn a_task_grows_its_memory_past_its_launch_limit_and_is_refused_what_the_worker_lacks() {
    let mut c = Cluster::start("resize-self");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let task = drover_task();
    // Launched with 64 MiB: allocating 200 MiB would be an OOM kill (see lifecycle.rs,
    // `a_task_over_its_memory_limit_is_killed_and_reported_as_out_of_memory`). After
    // the resize it is not. Then 8 cpus, more than the worker has: refused, exit 1.
    let script = format!(
        "{OWN_LIMIT}; {task} resize --memory 512M || exit 9; {OWN_LIMIT}; \
         x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo allocated ${{#x}}; \
         {task} resize --cpus 8; echo refused-exit=$?"
    );
    let id = c.submit(json!({
        "command": [script],
        "shell": true,
        "resources": {"cpu_milli": 1000, "memory_bytes": 64u64 << 20},
    }));
    let t = c.wait_final(id, Duration::from_secs(60));
    let out = c.cli_ok(&["logs", &id.to_string()]).stdout;
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{out}\n{}", c.logs());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        (64u64 << 20).to_string(),
        "the launch limit: {out}"
    );
    assert!(
        lines[1].starts_with("granted: task") && lines[1].contains("512 MiB memory"),
        "{out}"
    );
    assert_eq!(
        lines[2],
        (512u64 << 20).to_string(),
        "the raised limit: {out}"
    );
    assert_eq!(lines[3], "allocated 209715200", "{out}");
    assert_eq!(
        lines[4], "refused: worker w1 has 2 cpu free, 6 more needed",
        "{out}"
    );
    assert_eq!(lines[5], "refused-exit=1", "{out}");

    // The history, through the API and `drover status`.
    let t = c.task(id);
    assert_eq!(t.resizes.len(), 2, "{t:#?}");
    assert!(t.resizes[0].granted && !t.resizes[1].granted, "{t:#?}");
    assert_eq!(t.resizes[0].memory_bytes, Some(512 << 20));
    let status = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(status.contains("resizes:"), "{status}");
    assert!(
        status.contains("attempt 1 · 512 MiB memory · granted"),
        "{status}"
    );
    assert!(
        status.contains("8 cpu · refused: worker w1 has 2 cpu free, 6 more needed"),
        "{status}"
    );
    // Its end freed exactly what it held at the end: the worker is empty again.
    let w = &c.workers_info()[0];
    assert!(w.allocated.is_zero(), "{w:#?}");
}

#[test]
fn the_http_route_and_the_cli_resize_a_running_task_with_the_callers_rights() {
    let mut c = Cluster::start("resize-http");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let id = c.submit(json!({
        "command": ["sleep", "60"],
        "resources": {"cpu_milli": 500, "memory_bytes": 64u64 << 20},
    }));
    c.wait_state(id, "running", SLOW);
    let path = format!("/v1/tasks/{id}/resize");

    // Granted: 200 with what it holds now; the worker's reservation follows.
    let r = c.post(&path, &json!({"cpus": "2", "memory": "1G"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["granted"], true, "{v}");
    assert_eq!(v["resources"]["cpu_milli"], 2000, "{v}");
    assert_eq!(v["resources"]["memory_bytes"], 1u64 << 30, "{v}");
    let w = &c.workers_info()[0];
    assert_eq!(w.allocated.cpu_milli, 2000, "{w:#?}");
    // The limit reaches the task's cgroup (`SetLimits` to the worker).
    let limit_file = c.poll("the cgroup limit", SLOW, || {
        let pid = attempt_processes(
            &agent_id(&c.worker_name("w"), &c.root.join("wdata-w")),
            id,
            1,
        )
        .into_iter()
        .next()?;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = cg
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
        let file = format!("/sys/fs/cgroup/memory{rel}/memory.limit_in_bytes");
        (read(std::path::Path::new(&file)).trim() == (1u64 << 30).to_string()).then_some(file)
    });
    assert!(limit_file.ends_with("memory.limit_in_bytes"));

    // Refused: 409 with the reason; nothing changed.
    let r = c.post(&path, &json!({"cpus": "3"}));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.error()["message"],
        "worker w1 has 2 cpu free, 1 more needed",
        "{}",
        r.text()
    );
    // Bad input: 400 naming the field.
    for (body, field) in [
        (json!({"cpus": "lots"}), "cpus"),
        (json!({"memory": "8 apples"}), "memory"),
        (json!({"gpus": "1"}), "gpus"),
    ] {
        let r = c.post(&path, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.error()["field"].as_str().unwrap_or("").contains(field),
            "{body}: {}",
            r.text()
        );
    }
    // No credential: 401.
    let body = serde_json::to_vec(&json!({"cpus": "1"})).unwrap();
    let r = http(&c.addr, "POST", &path, None, Some(&body));
    assert_eq!(r.status, 401, "{}", r.text());

    // The CLI: granted prints, refused exits non-zero with the reason.
    let out = c.cli_ok(&["resize", &id.to_string(), "--cpus", "1", "--memory", "256M"]);
    assert!(out.stdout.contains("now 1 cpu, 256 MiB memory"), "{out}");
    let out = c.cli(&["resize", &id.to_string(), "--cpus", "5"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr
            .contains("worker w1 has 2 cpu free, 3 more needed"),
        "{out}"
    );
    let status = c.cli_ok(&["status", &id.to_string()]).stdout;
    assert!(
        status.contains("resources: 1 cpu, 256 MiB memory (resized; spec: 0.5 cpu, 64 MiB memory)"),
        "{status}"
    );
    // A `submit` client token resizes what it submitted, not another's task: 403.
    let created = c.cli_ok(&["--json", "token", "create", "--role", "submit"]);
    let created: serde_json::Value = serde_json::from_str(&created.stdout).unwrap();
    let user = created["secret"].as_str().unwrap().to_string();
    let post_as = |token: &str, path: &str, body: serde_json::Value| {
        http(
            &c.addr,
            "POST",
            path,
            Some(token),
            Some(&serde_json::to_vec(&body).unwrap()),
        )
    };
    let r = post_as(
        &user,
        "/v1/tasks",
        json!({"command": ["sleep", "60"], "resources": {"cpu_milli": 500}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let own = r.json()["first"].as_u64().unwrap();
    c.wait_state(own, "running", SLOW);
    let r = post_as(
        &user,
        &format!("/v1/tasks/{own}/resize"),
        json!({"cpus": "1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_as(&user, &path, json!({"cpus": "1"}));
    assert_eq!(r.status, 403, "{}", r.text());
    c.cli_ok(&["cancel", &own.to_string()]);

    // A finished task cannot be resized: 409.
    c.cli_ok(&["cancel", &id.to_string()]);
    c.wait_final(id, SLOW);
    let r = c.post(&path, &json!({"cpus": "1"}));
    assert_eq!(r.status, 409, "{}", r.text());
}

#[test]
fn only_a_running_attempts_own_token_over_its_agents_socket_resizes() {
    let mut c = Cluster::start("resize-token");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let task = drover_task();
    // A job file, as users write them: one task tries a made-up token, then no token,
    // then prints where its agent's socket is and sleeps.
    let job = c.file("job.yaml");
    std::fs::write(
        &job,
        format!(
            "tasks:\n  - key: probe\n    shell: true\n    cpus: 0.5\n    memory: 64M\n    command: |\n      \
             DROVER_TASK_TOKEN=made-up {task} resize --cpus 1; echo bogus-exit=$?\n      \
             env -u DROVER_TASK_TOKEN {task} resize --cpus 1; echo none-exit=$?\n      \
             echo \"socket=$DROVER_AGENT_SOCKET\"\n      \
             sleep 60\n"
        ),
    )
    .unwrap();
    let out = c.cli_ok(&["submit", "-f", job.to_str().unwrap()]);
    let id: u64 = c.poll("the task's id", SLOW, || {
        c.get_ok("/v1/tasks")["tasks"][0]["id"].as_u64()
    });
    c.wait_state(id, "running", SLOW);
    let text = c.poll("the probe's output", SLOW, || {
        let t = c.cli_ok(&["logs", &id.to_string()]).stdout;
        t.contains("socket=").then_some(t)
    });
    assert!(text.contains("bogus-exit=1"), "{text}\n{out}");
    assert!(text.contains("none-exit=1"), "{text}");
    let t = c.task(id);
    assert!(t.resizes.is_empty(), "nothing reached the cluster: {t:#?}");
    let socket = text
        .lines()
        .find_map(|l| l.strip_prefix("socket="))
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600, "the socket is the task user's alone");

    // Another user (not the task user) cannot even connect.
    let out = run_with_timeout(
        {
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args([
                "--reuid",
                "1",
                "--regid",
                "1",
                "--clear-groups",
                &task,
                "resize",
                "--cpus",
                "1",
            ])
            .env("DROVER_AGENT_SOCKET", &socket)
            .env("DROVER_TASK_TOKEN", "anything");
            cmd
        },
        Duration::from_secs(20),
        String::new,
    );
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("cannot reach the agent"), "{out}");
    c.cli_ok(&["cancel", &id.to_string()]);
}
