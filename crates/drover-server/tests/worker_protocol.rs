//! The worker protocol, driven by a hand-rolled worker over a real WebSocket against a
//! real server in this process: the edges a well-behaved agent rarely reaches.

use drover_client::Client;
use drover_proto::worker::{
    AttemptReport, AttemptUsage, PROTOCOL_VERSION, ServerMessage, StartTask, WORKER_CONNECT_PATH,
    WorkerMessage,
};
use drover_server::{RunningServer, ServerConfig};
use drover_types::{Attempt, Outcome, Resources, TaskId, TaskSpec, TaskState, WorkerSpec};
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client's TLS configuration for the server of data directory `dir`: a server alone
/// makes its CA there on first start, and a client on the same machine trusts it alone.
fn tls_config(dir: &std::path::Path) -> rustls::ClientConfig {
    let ca = std::fs::read_to_string(dir.join("tls").join("ca.crt")).expect("the server's CA");
    drover_client::tls::client_config(&ca, None).expect("a TLS client configuration")
}

struct Env {
    server: Option<RunningServer>,
    dir: PathBuf,
    client: Client,
}

impl Env {
    async fn start(name: &str, lost_after: Duration) -> Env {
        let dir = std::env::temp_dir().join(format!("drover-proto-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = ServerConfig::new(dir.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.worker_lost_after = lost_after;
        config.heartbeat_interval = Duration::from_millis(200);
        let server = drover_server::start(config).await.expect("server starts");
        let client = Client::new(server.url(), Some(server.node.token.as_str().to_string()))
            .with_tls(tls_config(&dir))
            .expect("a client over TLS");
        Env {
            server: Some(server),
            dir,
            client,
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    async fn connect(&self, token: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let url = format!("wss://{}{WORKER_CONNECT_PATH}", self.server().addr);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let connector =
            tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls_config(&self.dir)));
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(connector))
            .await
            .map(|(s, _)| s)
    }

    async fn join(&self, running: Vec<(TaskId, Attempt)>, finished: Vec<AttemptReport>) -> Socket {
        let mut socket = self
            .connect(self.server().node.token.as_str())
            .await
            .expect("connect");
        send(&mut socket, &hello(PROTOCOL_VERSION, running, finished)).await;
        match recv(&mut socket).await {
            ServerMessage::Welcome { .. } => socket,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    async fn state_of(&self, task: TaskId) -> TaskState {
        self.client
            .task(&task.to_string())
            .await
            .expect("task")
            .state
    }

    async fn wait_state(&self, task: TaskId, want: TaskState) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.state_of(task).await;
            if s == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {task} stayed {s}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hello(
    version: u32,
    running: Vec<(TaskId, Attempt)>,
    finished: Vec<AttemptReport>,
) -> WorkerMessage {
    WorkerMessage::Hello {
        protocol_version: version,
        spec: WorkerSpec {
            name: "hand".into(),
            capacity: Resources::cpus(1000),
            ..WorkerSpec::default()
        },
        kill_grace_ms: 100,
        running,
        finished,
    }
}

async fn send(socket: &mut Socket, m: &WorkerMessage) {
    socket
        .send(Message::Text(serde_json::to_string(m).unwrap().into()))
        .await
        .expect("send");
}

/// The next protocol message, skipping pings; panics after 5 s.
async fn recv(socket: &mut Socket) -> ServerMessage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a message within 5 s");
        match next {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).expect("a server message");
            }
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn recv_start(socket: &mut Socket) -> StartTask {
    loop {
        if let ServerMessage::Start(s) = recv(socket).await {
            return s;
        }
    }
}

fn report(task: TaskId, attempt: Attempt, code: i32) -> AttemptReport {
    AttemptReport {
        task,
        attempt,
        outcome: Outcome::Exited { code },
        usage: AttemptUsage::default(),
        result: "r".into(),
        stdout_bytes: 1,
        stderr_bytes: 0,
        output_truncated: false,
        digest: String::new(),
    }
    .sealed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_lost_in_flight_is_sent_again_when_the_worker_reconnects() {
    let env = Env::start("resend", Duration::from_secs(30)).await;
    let mut socket = env.join(vec![], vec![]).await;
    let submitted = env
        .client
        .submit_task(&TaskSpec::command(["/bin/true"]))
        .await
        .unwrap();
    let start = recv_start(&mut socket).await;
    assert_eq!((start.task, start.attempt), (submitted.first, Attempt(1)));
    // The worker drops the connection before it could act on the start.
    drop(socket);
    let mut socket = env.join(vec![], vec![]).await;
    let again = recv_start(&mut socket).await;
    assert_eq!(
        (again.task, again.attempt),
        (start.task, start.attempt),
        "the same attempt, not a new one"
    );
    send(
        &mut socket,
        &WorkerMessage::Started {
            task: again.task,
            attempt: again.attempt,
            gpus: Vec::new(),
        },
    )
    .await;
    send(
        &mut socket,
        &WorkerMessage::Finished(report(again.task, again.attempt, 0)),
    )
    .await;
    env.wait_state(again.task, TaskState::Succeeded).await;
    assert_eq!(
        env.client
            .task(&again.task.to_string())
            .await
            .unwrap()
            .attempts
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_reported_in_the_hello_are_recorded_and_acknowledged() {
    let env = Env::start("hello-finished", Duration::from_secs(30)).await;
    let mut socket = env.join(vec![], vec![]).await;
    let submitted = env
        .client
        .submit_task(&TaskSpec::command(["/bin/true"]))
        .await
        .unwrap();
    let start = recv_start(&mut socket).await;
    send(
        &mut socket,
        &WorkerMessage::Started {
            task: start.task,
            attempt: start.attempt,
            gpus: Vec::new(),
        },
    )
    .await;
    env.wait_state(submitted.first, TaskState::Running).await;
    // Disconnected while the task ended: the end comes with the next hello.
    drop(socket);
    let mut socket = env
        .join(vec![], vec![report(start.task, start.attempt, 0)])
        .await;
    loop {
        if let ServerMessage::FinishedAck { task, attempt } = recv(&mut socket).await {
            assert_eq!((task, attempt), (start.task, start.attempt));
            break;
        }
    }
    env.wait_state(submitted.first, TaskState::Succeeded).await;
}

/// A `Started` lost with its connection (or with a leader that lost its office) must
/// not leave an attempt that ran without a start: an end that only a process gives,
/// reported in the next hello, records the start too; an end that a never-started
/// attempt may have (killed while queued) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_reported_in_the_hello_records_the_start_whose_report_was_lost() {
    let env = Env::start("lost-started", Duration::from_secs(30)).await;
    let mut socket = env.join(vec![], vec![]).await;
    // Half the worker each, so both are placed at once.
    let half = TaskSpec {
        resources: Resources::cpus(500),
        ..TaskSpec::command(["/bin/true"])
    };
    let ran = env.client.submit_task(&half).await.unwrap().first;
    let start = recv_start(&mut socket).await;
    assert_eq!(start.task, ran);
    let queued = env.client.submit_task(&half).await.unwrap().first;
    let other = recv_start(&mut socket).await;
    assert_eq!(other.task, queued);
    // Neither start is reported: the connection drops first.
    drop(socket);
    let killed = AttemptReport {
        outcome: Outcome::Killed,
        ..report(other.task, other.attempt, 0)
    }
    .sealed();
    let _socket = env
        .join(vec![], vec![report(ran, start.attempt, 0), killed])
        .await;
    env.wait_state(ran, TaskState::Succeeded).await;
    let t = env.client.task(&ran.to_string()).await.unwrap();
    assert_eq!(t.attempts.len(), 1, "{t:#?}");
    assert!(t.attempts[0].started_at.is_some(), "{t:#?}");
    assert!(t.started_at.is_some(), "{t:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let q = loop {
        let q = env.client.task(&queued.to_string()).await.unwrap();
        if q.attempts.first().is_some_and(|a| a.ended_at.is_some()) {
            break q;
        }
        assert!(Instant::now() < deadline, "{q:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(q.attempts[0].started_at, None, "{q:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_a_worker_declared_lost_is_rejected() {
    let env = Env::start("stale", Duration::from_millis(1500)).await;
    let mut socket = env.join(vec![], vec![]).await;
    let mut spec = TaskSpec::command(["/bin/true"]);
    spec.retry.max_attempts = 1;
    let submitted = env.client.submit_task(&spec).await.unwrap();
    let start = recv_start(&mut socket).await;
    send(
        &mut socket,
        &WorkerMessage::Started {
            task: start.task,
            attempt: start.attempt,
            gpus: Vec::new(),
        },
    )
    .await;
    env.wait_state(submitted.first, TaskState::Running).await;
    // Go silent (no heartbeats, no reads) until the server declares the worker lost.
    env.wait_state(submitted.first, TaskState::Failed).await;
    let info = env.client.task(&submitted.first.to_string()).await.unwrap();
    assert!(
        info.reason.unwrap_or_default().contains("lost"),
        "the reason names the loss"
    );
    // Its late report of success changes nothing.
    let _ = socket
        .send(Message::Text(
            serde_json::to_string(&WorkerMessage::Finished(report(
                start.task,
                start.attempt,
                0,
            )))
            .unwrap()
            .into(),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.state_of(submitted.first).await, TaskState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_protocol_version_or_no_token_is_refused() {
    let env = Env::start("refuse", Duration::from_secs(30)).await;
    let mut socket = env.connect(env.server().node.token.as_str()).await.unwrap();
    send(&mut socket, &hello(PROTOCOL_VERSION + 1, vec![], vec![])).await;
    match recv(&mut socket).await {
        ServerMessage::Reject {
            reason, permanent, ..
        } => {
            assert!(reason.contains("protocol"), "{reason}");
            assert!(permanent, "another version will not do better next time");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let err = env
        .connect("not-the-token")
        .await
        .expect_err("a wrong token is refused");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        env.client.workers().await.unwrap().is_empty(),
        "no worker joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_acknowledged_and_the_welcome_sets_the_fence_inside_the_lost_timeout() {
    let env = Env::start("acks", Duration::from_secs(10)).await;
    let mut socket = env
        .connect(env.server().node.token.as_str())
        .await
        .expect("connect");
    send(&mut socket, &hello(PROTOCOL_VERSION, vec![], vec![])).await;
    match recv(&mut socket).await {
        ServerMessage::Welcome {
            lost_after_ms,
            fence_after_ms,
            heartbeat_interval_ms,
            ..
        } => {
            assert_eq!(lost_after_ms, 10_000);
            assert_eq!(heartbeat_interval_ms, 200);
            // 10 s - the hello's 100 ms kill grace - the 500 ms settle margin.
            assert_eq!(fence_after_ms, 9_400);
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    for seq in [7u64, 8, 9] {
        send(
            &mut socket,
            &WorkerMessage::Heartbeat {
                seq,
                usage: Default::default(),
                tasks: vec![],
                load: None,
                data: None,
            },
        )
        .await;
        loop {
            match recv(&mut socket).await {
                ServerMessage::HeartbeatAck { seq: acked } => {
                    assert_eq!(acked, seq);
                    break;
                }
                ServerMessage::Start(_) | ServerMessage::FinishedAck { .. } => {}
                other => panic!("expected the ack of heartbeat {seq}, got {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_kill_grace_leaves_no_room_for_the_fence_is_refused_for_good() {
    let env = Env::start("grace", Duration::from_secs(3)).await;
    let mut socket = env
        .connect(env.server().node.token.as_str())
        .await
        .expect("connect");
    let mut h = hello(PROTOCOL_VERSION, vec![], vec![]);
    if let WorkerMessage::Hello { kill_grace_ms, .. } = &mut h {
        // 3 s - 2.5 s - 0.5 s leaves nothing for three heartbeats of 200 ms.
        *kill_grace_ms = 2_500;
    }
    send(&mut socket, &h).await;
    match recv(&mut socket).await {
        ServerMessage::Reject {
            reason, permanent, ..
        } => {
            assert!(permanent, "{reason}");
            assert!(
                reason.contains("--kill-grace") && reason.contains("--worker-timeout"),
                "names the settings to change: {reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(env.client.workers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_to_start_with_a_worker_timeout_that_leaves_no_room_for_the_fence() {
    let dir = std::env::temp_dir().join(format!("drover-proto-timing-{}", std::process::id()));
    let mut config = ServerConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.heartbeat_interval = Duration::from_secs(1);
    config.worker_lost_after = Duration::from_millis(3_400);
    let err = drover_server::start(config).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains("worker timeout (3.4s) must be at least 3.5s"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
