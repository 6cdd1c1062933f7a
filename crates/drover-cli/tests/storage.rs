//! A server whose disk fills up: it refuses writes with a 503 naming the cause, says so
//! in its health, keeps answering reads, and takes writes again by itself once there is
//! room, with nothing acknowledged lost; in a group, another server takes over. Real
//! processes, a real (small, tmpfs) file system under the data directory. Needs root
//! (to mount).

mod common;

use common::servers::ServerSet;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of the given size mounted at a directory; unmounted (lazily, so a process
/// still using it does not keep it) on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount (disk-full tests need root and mount)");
        assert!(
            out.status.success(),
            "mount -t tmpfs at {} failed (disk-full tests need root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    /// Writes a file of zeros until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.at.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // Whatever a smaller write still fits.
        while f.write_all(&[0u8; 512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// A task whose spec is large (long arguments, each within the 64 KiB limit), to use
/// up space fast.
fn big_task(name: &str) -> Value {
    let arg = "x".repeat(60_000);
    json!({"name": name, "command": ["true", arg, arg, arg, arg]})
}

fn post(addr: &str, token: &str, body: &Value) -> Resp {
    let b = serde_json::to_vec(body).unwrap();
    http(addr, "POST", "/v1/tasks", Some(token), Some(&b))
}

#[test]
fn a_full_disk_refuses_writes_with_the_cause_and_recovers_by_itself() {
    let mut mount = None;
    let c = Cluster::start_prepared("disk-full", &[], |c| {
        mount = Some(Tmpfs::mount(&c.data.join("server"), "20m"));
    });
    let mount = mount.unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(c.submit(json!({"name": format!("before-{i}"), "command": ["true"]})));
    }

    let filler = mount.fill();
    // redb may still have free pages in its file: submit big tasks until one is refused.
    let mut refused = None;
    for i in 0..200 {
        let r = post(&c.addr, &c.token, &big_task(&format!("fill-{i}")));
        match r.status {
            201 => acked.push(r.json()["first"].as_u64().unwrap()),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected answer {other}: {}\n{}", r.text(), c.logs()),
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("no write was refused\n{}", c.logs()));
    let message = refused.error()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("No space left on device"),
        "the 503 does not name the cause: {message}"
    );
    assert_eq!(refused.error()["code"], "storage_failed");
    eprintln!("refused: {message}");

    // Later writes are refused at once, naming the cause.
    let t = Instant::now();
    let again = post(&c.addr, &c.token, &json!({"command": ["true"]}));
    assert_eq!(again.status, 503, "{}", again.text());
    assert!(again.text().contains("No space left on device"));
    eprintln!(
        "a write while the disk is full was refused in {:?}",
        t.elapsed()
    );

    // Health says so, with a non-2xx code.
    let h = http(&c.addr, "GET", "/v1/health", None, None);
    assert_eq!(h.status, 503, "{}", h.text());
    let h = h.json();
    assert_eq!(h["status"], "storage_failed", "{h}");
    assert!(
        h["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No space left on device")),
        "{h}"
    );

    // Reads work.
    for id in &acked {
        let r = c.get(&format!("/v1/tasks/{id}"));
        assert_eq!(r.status, 200, "task {id}: {}", r.text());
    }
    assert_eq!(c.get("/v1/cluster").status, 200);

    // Room again: writes are taken again within seconds, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let id = poll(
        "a write accepted after the disk was freed",
        Duration::from_secs(30),
        || {
            let r = post(
                &c.addr,
                &c.token,
                &json!({"name": "after", "command": ["true"]}),
            );
            (r.status == 201).then(|| r.json()["first"].as_u64().unwrap())
        },
        || c.logs(),
    );
    eprintln!(
        "writes accepted again {:?} after the space was freed",
        freed.elapsed()
    );
    acked.push(id);
    let h = http(&c.addr, "GET", "/v1/health", None, None);
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["status"], "ok");

    // Nothing acknowledged is lost, and a restart (from the same data directory) still
    // has it all.
    for id in &acked {
        assert_eq!(c.get(&format!("/v1/tasks/{id}")).status, 200, "task {id}");
    }
    let mut c = c;
    c.kill_server();
    c.restart_server();
    for id in &acked {
        assert_eq!(
            c.get(&format!("/v1/tasks/{id}")).status,
            200,
            "task {id} after a restart"
        );
    }
    drop(c);
    drop(mount);
}

#[test]
fn when_the_leaders_disk_fills_another_server_takes_over() {
    let mut set = ServerSet::new("disk-full-group");
    // Every server's data directory on a small file system of its own (mounted before
    // it starts: a mount over a live directory would hide the files it has open).
    let mounts: Vec<Tmpfs> = (0..3)
        .map(|i| Tmpfs::mount(&set.root.join(format!("s{i}")).join("server"), "20m"))
        .collect();
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let mut acked = Vec::new();
    for _ in 0..3 {
        acked.push(
            set.cli_ok(&["submit", "--", "true"])
                .stdout
                .trim()
                .parse::<u64>()
                .unwrap(),
        );
    }

    let filler = mounts[leader].fill();
    // Writes sent to the leader fill what is left, then fail; its health says so.
    let addr = set.addrs[leader].clone();
    let mut failed = false;
    for i in 0..200 {
        let r = post(&addr, &set.token, &big_task(&format!("fill-{i}")));
        if r.status == 503 {
            failed = true;
            break;
        }
        assert_eq!(r.status, 201, "{}", r.text());
        acked.push(r.json()["first"].as_u64().unwrap());
    }
    assert!(failed, "the leader never refused a write\n{}", set.logs());
    let h = http(&addr, "GET", "/v1/health", None, None);
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["status"], "storage_failed");

    // The others elect a leader of their own (the stuck one sends no heartbeats) and
    // writes continue through the group: the CLI, given every server, gets through.
    let t = Instant::now();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = poll(
        "another leader",
        SLOW,
        || {
            others.iter().copied().find(|i| {
                set.health(*i)
                    .is_some_and(|h| h["leader"] == Value::Bool(true))
            })
        },
        || set.logs(),
    );
    eprintln!(
        "server {new_leader} leads {:?} after the disk filled",
        t.elapsed()
    );
    let out = set.cli_ok(&["submit", "--name", "after-takeover", "--", "true"]);
    acked.push(out.stdout.trim().parse().unwrap());
    for id in &acked {
        assert!(
            set.task_on(new_leader, *id).is_some(),
            "acknowledged task {id} missing on the new leader"
        );
    }

    // Room again on the old leader: it follows and catches up by itself.
    std::fs::remove_file(&filler).unwrap();
    poll(
        "the old leader healthy and following",
        SLOW,
        || {
            let h = set.health(leader)?;
            (h["status"] == "ok" && h["leader"] == Value::Bool(false)).then_some(())
        },
        || set.logs(),
    );
    let last = *acked.last().unwrap();
    poll(
        "the old leader has the writes made without it",
        SLOW,
        || set.task_on(leader, last),
        || set.logs(),
    );
    assert_eq!(set.leaders(), vec![new_leader]);
    drop(set);
    drop(mounts);
}
