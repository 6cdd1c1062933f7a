//! The agent runs only starts signed with the key its welcome named: against a
//! hand-rolled server (a real WebSocket on loopback), the real agent with the real
//! process driver is sent a start whose signature was tampered with, then a properly
//! signed one. The first must not run (its command would create a file) and must be
//! reported as failing to start; the second runs.

use drover_proto::integrity::TaskSigner;
use drover_proto::worker::{PROTOCOL_VERSION, ServerMessage, StartTask, WorkerMessage};
use drover_types::{Attempt, Outcome, TaskId, TaskSpec};
use drover_worker::WorkerConfig;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(socket: &mut ServerSocket, m: &ServerMessage) {
    socket
        .send(Message::Text(serde_json::to_string(m).unwrap().into()))
        .await
        .unwrap();
}

/// The next report of an attempt's end, answering heartbeats on the way.
async fn next_finished(socket: &mut ServerSocket) -> drover_proto::worker::AttemptReport {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a report within 20 s")
            .expect("open")
            .expect("a frame");
        let Message::Text(t) = m else { continue };
        match serde_json::from_str::<WorkerMessage>(&t).unwrap() {
            WorkerMessage::Finished(r) => return r,
            WorkerMessage::Heartbeat { seq, .. } => {
                send(socket, &ServerMessage::HeartbeatAck { seq }).await
            }
            _ => {}
        }
    }
}

fn touch(path: &std::path::Path, task: u64) -> StartTask {
    StartTask {
        task: TaskId(task),
        attempt: Attempt(1),
        spec: TaskSpec::command(["touch", path.to_str().unwrap()]),
        array_index: None,
        array_count: None,
        slice: None,
        inputs: vec![],
        signature: String::new(),
        resume: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_signature_does_not_verify_is_refused_and_reported_not_run() {
    let dir = std::env::temp_dir().join(format!("drover-signed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Tasks run as an unprivileged user when the test runs as root (confinement): the
    // directory they touch their markers in is open to them, like /tmp.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = WorkerConfig::new(
        format!("http://{addr}"),
        "token",
        "signed",
        dir.join("worker"),
    );
    config.cgroups = false;
    config.kill_grace = Duration::from_millis(200);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(drover_worker::run(
        config,
        async {
            let _ = stop_rx.await;
        },
        None,
    ));

    let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the agent connects")
        .unwrap();
    let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let hello = socket.next().await.unwrap().unwrap();
    assert!(matches!(
        serde_json::from_str::<WorkerMessage>(hello.to_text().unwrap()).unwrap(),
        WorkerMessage::Hello { .. }
    ));
    let signer = TaskSigner::from_seed([7; 32]);
    send(
        &mut socket,
        &ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            worker: drover_types::WorkerId(1),
            heartbeat_interval_ms: 200,
            lost_after_ms: 30_000,
            fence_after_ms: 29_000,
            task_key: signer.public_hex(),
            credential: None,
        },
    )
    .await;

    // Signed, then changed on the way: another command under the same signature.
    let forged_marker = dir.join("forged");
    let mut forged = touch(&dir.join("innocent"), 1);
    signer.sign(&mut forged);
    forged.spec = TaskSpec::command(["touch", forged_marker.to_str().unwrap()]);
    send(&mut socket, &ServerMessage::Start(forged)).await;
    let report = next_finished(&mut socket).await;
    assert_eq!(report.task, TaskId(1));
    match &report.outcome {
        Outcome::SpawnFailed { message } => {
            assert!(message.contains("signature"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(report.digest_matches(), "reports carry their digest");

    // Signed by another key: refused the same way.
    let mut foreign = touch(&forged_marker, 2);
    TaskSigner::from_seed([8; 32]).sign(&mut foreign);
    send(&mut socket, &ServerMessage::Start(foreign)).await;
    let report = next_finished(&mut socket).await;
    assert!(
        matches!(report.outcome, Outcome::SpawnFailed { .. }),
        "{report:?}"
    );

    // A start signed by the leader's key runs.
    let ran_marker = dir.join("ran");
    let mut honest = touch(&ran_marker, 3);
    signer.sign(&mut honest);
    send(&mut socket, &ServerMessage::Start(honest)).await;
    let report = next_finished(&mut socket).await;
    assert_eq!(report.task, TaskId(3));
    assert_eq!(report.outcome, Outcome::Exited { code: 0 }, "{report:?}");
    assert!(ran_marker.exists(), "the signed start ran");
    assert!(!forged_marker.exists(), "no refused start ran");

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    let _ = std::fs::remove_dir_all(&dir);
}
