//! A full disk while snapshots are being written (one every 5 entries, so the large
//! snapshot file is what fails first): openraft's core must not stop; the server
//! refuses writes, says so in its health, and takes writes again once the file system
//! has room (here: remounted larger). In-process server (for the snapshot interval),
//! real sockets, a real tmpfs. Needs root (to mount).

use drover_server::ServerConfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount (this test needs root)")
            .success();
        assert!(
            ok,
            "mount -t tmpfs at {} failed (this test needs root)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn big_task(i: usize) -> Value {
    let arg = "x".repeat(60_000);
    json!({"name": format!("big-{i}"), "command": ["true", arg, arg, arg, arg]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_snapshotting_does_not_stop_raft_and_is_recovered_from() {
    let dir = std::env::temp_dir().join(format!("drover-disk-full-{}", std::process::id()));
    let mount = Tmpfs::mount(&dir, "12m");
    let mut config = ServerConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.token = Some("cluster".into());
    config.snapshot_every = 5;
    config.keep_after_snapshot = 2;
    let server = drover_server::start(config).await.expect("server");
    // A server alone made its CA in its data directory on first start: trust it alone.
    let ca = std::fs::read_to_string(dir.join("tls").join("ca.crt")).expect("its CA");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(drover_client::tls::client_config(&ca, None).unwrap())
        .build()
        .unwrap();
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let url = server.url();
    let post = |body: Value| {
        http.post(format!("{url}/v1/tasks"))
            .bearer_auth("cluster")
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
    };

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..300 {
        let r = post(big_task(i)).await.unwrap();
        match r.status().as_u16() {
            201 => acked.push(r.json::<Value>().await.unwrap()["first"].as_u64().unwrap()),
            503 => {
                refused = Some(r.json::<Value>().await.unwrap());
                break;
            }
            s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    let refused = refused.expect("the disk never filled up");
    eprintln!("{} writes accepted, then: {refused}", acked.len());
    assert!(
        refused.to_string().contains("No space left on device"),
        "{refused}"
    );
    let health = http.get(format!("{url}/v1/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    assert_eq!(
        health.json::<Value>().await.unwrap()["status"],
        "storage_failed"
    );
    // The core is still running (it would have quit on the first storage error).
    assert!(
        server.node.raft.metrics().borrow().running_state.is_ok(),
        "openraft stopped"
    );

    // Room again.
    mount.resize("64m");
    let freed = Instant::now();
    let id = loop {
        let r = post(json!({"command": ["true"]})).await.unwrap();
        if r.status().as_u16() == 201 {
            break r.json::<Value>().await.unwrap()["first"].as_u64().unwrap();
        }
        assert!(
            freed.elapsed() < Duration::from_secs(30),
            "writes still refused 30 s after the disk had room: {}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "writes accepted again {:?} after the resize",
        freed.elapsed()
    );
    acked.push(id);
    let health = http.get(format!("{url}/v1/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let m = server.node.raft.metrics().borrow().clone();
    assert!(m.running_state.is_ok());
    assert!(m.snapshot.is_some(), "no snapshot was ever written: {m:?}");
    for id in &acked {
        let r = http
            .get(format!("{url}/v1/tasks/{id}"))
            .bearer_auth("cluster")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "acknowledged task {id}");
    }
    server.shutdown().await;
    drop(mount);
}
