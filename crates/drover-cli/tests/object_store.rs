//! Task output archived in an object store, seen from the outside: a real S3-compatible
//! server (moto's server mode, from PyPI: `scripts/test.sh` installs it), a real
//! `drover server --object-store s3://…` and a real worker. Ended attempts' output
//! must land in the bucket as `output/<task>/<attempt>.<stream>` under the prefix, and
//! stay readable through `drover logs` and the API once the server's own files are
//! gone; a bucket that does not exist stops the server at start. In a group of three
//! (on a shared `file://` directory), every server reads the archive and a new leader
//! goes on archiving.
//!
//! moto is looked for as `$DROVER_MOTO_SERVER`, then `target/moto-venv/bin/moto_server`
//! (where `scripts/test.sh` installs it), then `moto_server` on the PATH. Without it
//! the S3 tests fail, unless `DROVER_SKIP_S3=1` (then they say they were skipped).

mod common;

use common::servers::free_ports;
use common::*;
use serde_json::json;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "drover-test";
const PREFIX: &str = "cluster-a";

/// A moto server on a free loopback port, killed (by its pid) on drop.
struct Moto {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Moto {
    /// Starts moto, or `None` when it is absent and `DROVER_SKIP_S3=1`.
    fn start() -> Option<Moto> {
        let Some(bin) = moto_binary() else {
            if std::env::var("DROVER_SKIP_S3").as_deref() == Ok("1") {
                eprintln!(
                    "SKIPPED: moto_server not found and DROVER_SKIP_S3=1: the object store tests did not run"
                );
                return None;
            }
            panic!(
                "moto_server not found (looked at $DROVER_MOTO_SERVER, target/moto-venv/bin/moto_server, PATH): \
                 install it with `python3 -m venv target/moto-venv && target/moto-venv/bin/pip install 'moto[server]'` \
                 (scripts/test.sh does), or set DROVER_SKIP_S3=1 to skip these tests knowingly"
            );
        };
        let dir = TempDir::new("moto");
        let port = free_ports(1)[0];
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Moto {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + SLOW;
        loop {
            if let Ok(Some(st)) = moto.child.try_wait() {
                panic!("moto exited early with {st}: {}", moto.log());
            }
            if moto.request("GET", "/").is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within {SLOW:?}: {}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn log(&self) -> String {
        tail(&self._dir.path().join("moto.log"), 30)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One plain HTTP request, unsigned (moto allows this for buckets: creating and
    /// listing them).
    fn request(&self, method: &str, path: &str) -> std::io::Result<Resp> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(SLOW))?;
        use std::io::Write;
        s.write_all(&request_bytes(&self.addr, method, path, None, &[], None))?;
        read_response(&mut s)
    }

    fn create_bucket(&self, bucket: &str) {
        let r = self
            .request("PUT", &format!("/{bucket}"))
            .expect("create bucket");
        assert_eq!(r.status, 200, "creating the bucket: {}", r.text());
    }

    /// The keys in the bucket under `prefix`, with their sizes (ListObjectsV2).
    fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let r = self
            .request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))
            .expect("list the bucket");
        assert_eq!(r.status, 200, "listing the bucket: {}", r.text());
        let xml = r.text();
        let mut out = Vec::new();
        for contents in xml.split("<Contents>").skip(1) {
            let field = |name: &str| {
                contents
                    .split_once(&format!("<{name}>"))
                    .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                    .map(|(v, _)| v.to_string())
                    .unwrap_or_else(|| panic!("no <{name}> in {contents}"))
            };
            out.push((field("Key"), field("Size").parse().expect("a size")));
        }
        out.sort();
        out
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DROVER_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// Credentials moto accepts, and no reach for an instance's metadata service.
fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn ended_attempts_are_archived_and_read_back_once_local_files_are_gone() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let endpoint = moto.endpoint();
    let mut c = Cluster::start_prepared(
        "objstore",
        &[
            "--worker-timeout",
            "3s",
            "--heartbeat-interval",
            "250ms",
            "--object-store",
            &url,
            "--object-store-endpoint",
            &endpoint,
            "--object-store-allow-http",
        ],
        |c| c.server_env = aws_env(),
    );
    c.add_worker("w", &["--cpus", "2", "--memory", "2G"]);

    // ~290 KB of stdout (more than one read chunk of the CLI is not needed: the API's
    // offset read below checks ranges), a line of stderr.
    let id = c.submit(json!({
        "command": ["sh", "-c", "seq 1 50000; echo on-stderr >&2"],
    }));
    let t = c.wait_final(id, SLOW);
    assert_eq!(t.state.as_str(), "succeeded");
    let expected_out: String = (1..=50000).map(|i| format!("{i}\n")).collect();

    // Both streams land in the bucket, whole.
    let out_key = format!("{PREFIX}/output/{id}/1.stdout");
    let err_key = format!("{PREFIX}/output/{id}/1.stderr");
    let listed = c.poll("both streams to be archived", SLOW, || {
        let l = moto.list(BUCKET, &format!("{PREFIX}/output/{id}/"));
        (l.len() == 2).then_some(l)
    });
    assert_eq!(
        listed,
        [
            (err_key.clone(), "on-stderr\n".len() as u64),
            (out_key.clone(), expected_out.len() as u64)
        ]
    );

    // The server's own copy goes (as if it had joined later, or its disk was cleaned):
    // the CLI and the API still read the output, from the bucket (moto refuses an
    // unsigned GET of an object, so the bytes are checked through Drover's reads).
    let local = c.data.join("server").join("output").join(id.to_string());
    assert!(local.is_dir(), "the server kept its own copy at first");
    std::fs::remove_dir_all(&local).expect("remove the local output");
    let logs = c.cli_ok(&["logs", &id.to_string()]);
    assert_eq!(
        logs.stdout, expected_out,
        "drover logs after the local copy went"
    );
    let errs = c.cli_ok(&["logs", &id.to_string(), "--stderr"]);
    assert!(errs.stdout.contains("on-stderr"), "{errs}");
    let r = c.get(&format!("/v1/tasks/{id}/output?offset=100000&attempt=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, &expected_out.as_bytes()[100_000..]);
    assert_eq!(
        r.header("x-drover-output-length"),
        Some(expected_out.len().to_string().as_str())
    );
    // Following an ended attempt reads it to the end too.
    let followed = c.cli_ok(&["logs", &id.to_string(), "--follow"]);
    assert_eq!(followed.stdout, expected_out, "drover logs --follow");
    assert!(
        !local.exists(),
        "reads came from the bucket, not a new local copy"
    );

    // A task that writes nothing has no object, and reads as empty.
    let quiet = c.submit(json!({"command": ["true"]}));
    assert_eq!(c.wait_final(quiet, SLOW).state.as_str(), "succeeded");
    let logs = c.cli_ok(&["logs", &quiet.to_string()]);
    assert_eq!(logs.stdout, "");
    assert!(
        moto.list(BUCKET, &format!("{PREFIX}/output/{quiet}/"))
            .is_empty()
    );
}

#[test]
fn a_missing_bucket_or_a_bad_url_stops_the_server_at_start() {
    let Some(moto) = Moto::start() else { return };
    let dir = TempDir::new("objstore-bad");
    let endpoint = moto.endpoint();
    let start = |url: &str| {
        let mut cmd = drover_command();
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["server", "--listen", "127.0.0.1:0", "--object-store", url])
            .args([
                "--object-store-endpoint",
                &endpoint,
                "--object-store-allow-http",
            ])
            .envs(aws_env());
        run_with_timeout(cmd, Duration::from_secs(60), String::new)
    };
    let out = start("s3://no-such-bucket/x");
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr
            .contains("cannot use the object store s3://no-such-bucket/x")
            && out.stderr.contains("NoSuchBucket"),
        "{out}"
    );
    let out = start("s4://bucket/x");
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("unknown scheme"), "{out}");
    assert!(
        !dir.path().join("server").join("endpoint").exists(),
        "the server never listened"
    );
}

/// The archive in a group of three servers, on a shared directory (`file://`; the S3
/// client is exercised above): the leader uploads, every server reads the archive once
/// its own copy is gone, and a new leader archives what ends after a failover.
#[test]
fn every_server_of_a_group_reads_the_archive_and_a_new_leader_keeps_archiving() {
    let mut set = servers::ServerSet::new("objstore-ha");
    let blobs = set.root.join("blobs");
    let url = format!("file://{}", blobs.display());
    set.add_server_args(&["--object-store", &url]);
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    set.add_worker("w", &["--cpus", "2"]);

    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let archived = |id: u64| blobs.join(format!("output/{id}/1.stdout"));
    let ended = |set: &servers::ServerSet, on: usize, id: u64| {
        poll(
            &format!("task {id} to succeed"),
            SLOW,
            || {
                set.task_on(on, id)
                    .filter(|t| t.state.as_str() == "succeeded")
            },
            || set.logs(),
        )
    };
    let id = set.submit(&json!({"command": ["seq", "1", "20000"]}));
    ended(&set, leader, id);
    poll(
        "the output to be archived",
        SLOW,
        || {
            std::fs::metadata(archived(id))
                .ok()
                .filter(|m| m.len() == expected.len() as u64)
        },
        || set.logs(),
    );

    // Every server loses its own copy; each still serves the whole output.
    for i in 0..3 {
        let local = set
            .data_dir(i)
            .join("server")
            .join("output")
            .join(id.to_string());
        let _ = std::fs::remove_dir_all(&local);
    }
    for i in 0..3 {
        let r = set.get(i, &format!("/v1/tasks/{id}/output?attempt=1"));
        assert_eq!(r.status, 200, "server {i}: {}", r.text());
        assert_eq!(
            r.body.len(),
            expected.len(),
            "server {i} read the archive after its copy went"
        );
        assert_eq!(r.body, expected.as_bytes(), "server {i}");
    }

    // The leader goes; the next one archives what ends under it.
    set.kill(leader);
    let next = set.wait_leader(SLOW);
    assert_ne!(next, leader);
    let second = set.submit(&json!({"command": ["seq", "1", "20000"]}));
    ended(&set, next, second);
    poll(
        "the new leader to archive the output",
        SLOW,
        || {
            std::fs::metadata(archived(second))
                .ok()
                .filter(|m| m.len() == expected.len() as u64)
        },
        || set.logs(),
    );

    // A checkpoint is put into the object store before it is logged: it outlives the
    // server that took it (a new leader reads it from there).
    let ckpt = set.submit(&json!({
        "command": ["echo step > \"$DROVER_CHECKPOINT_DIR/state\"; sleep 3"],
        "shell": true,
        "checkpoint": {"interval_ms": 200}
    }));
    let saved = poll(
        "a checkpoint of the task in the object store",
        SLOW,
        || {
            std::fs::read_dir(blobs.join(format!("checkpoints/{ckpt}")))
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("1."))
        },
        || set.logs(),
    );
    let recorded = poll(
        "the checkpoint to be recorded",
        SLOW,
        || set.task_on(next, ckpt).and_then(|t| t.checkpoint),
        || set.logs(),
    );
    assert!(
        saved.starts_with(&format!("{}.", recorded.attempt.0)),
        "{saved} vs {recorded:?}"
    );
}
