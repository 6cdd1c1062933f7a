//! Worker identities at the protocol level, with a hand-rolled worker over a real
//! WebSocket against a real server in this process: join tokens, credentials bound to one
//! worker, what a credential cannot reach, fenced output and ends, signed starts.

use drover_client::Client;
use drover_proto::integrity::TaskVerifier;
use drover_proto::worker::{
    AttemptReport, AttemptUsage, OutputFrame, OutputStream, PROTOCOL_VERSION, ServerMessage,
    StartTask, WORKER_CONNECT_PATH, WorkerMessage,
};
use drover_server::{RunningServer, ServerConfig};
use drover_types::{Attempt, Outcome, Resources, TaskId, TaskSpec, TaskState, WorkerSpec};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Env {
    server: RunningServer,
    dir: PathBuf,
    admin: Client,
}

impl Env {
    async fn start(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("drover-wid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = ServerConfig::new(dir.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.heartbeat_interval = Duration::from_millis(200);
        // Plain HTTP: this test speaks the worker protocol over a raw WebSocket; the same
        // protocol over TLS is `worker_protocol.rs`'s.
        config.tls = drover_server::TlsMode::Insecure;
        let server = drover_server::start(config).await.expect("server starts");
        let admin = Client::new(server.url(), Some(server.node.token.as_str().to_string()));
        Env { server, dir, admin }
    }

    async fn connect(&self, secret: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{}{WORKER_CONNECT_PATH}", self.server.addr);
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
    }

    /// Connects with `secret` as the worker `name` and returns the socket and welcome.
    async fn hello(&self, secret: &str, name: &str) -> (Socket, ServerMessage) {
        let mut socket = self.connect(secret).await.expect("connect");
        send(&mut socket, &hello(name)).await;
        let answer = recv(&mut socket).await;
        (socket, answer)
    }

    async fn join_token(&self, ttl_ms: u64, uses: u32) -> String {
        self.admin
            .create_join_token(Some(ttl_ms), Some(uses))
            .await
            .expect("join token")
            .token
    }

    async fn metrics(&self) -> String {
        let (status, body) = self
            .admin
            .raw(Method::GET, "/metrics", None)
            .await
            .expect("metrics");
        assert!(status.is_success());
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hello(name: &str) -> WorkerMessage {
    WorkerMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        spec: WorkerSpec {
            name: name.into(),
            capacity: Resources::cpus(1000),
            ..WorkerSpec::default()
        },
        kill_grace_ms: 100,
        running: vec![],
        finished: vec![],
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
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("a message"),
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

fn report(task: TaskId, attempt: Attempt, result: &str) -> AttemptReport {
    AttemptReport {
        task,
        attempt,
        outcome: Outcome::Exited { code: 0 },
        usage: AttemptUsage::default(),
        result: result.into(),
        stdout_bytes: result.len() as u64,
        stderr_bytes: 0,
        output_truncated: false,
        digest: String::new(),
    }
    .sealed()
}

fn frame(task: TaskId, attempt: Attempt, data: &[u8]) -> Message {
    Message::Binary(
        OutputFrame {
            task,
            attempt,
            stream: OutputStream::Stdout,
            offset: 0,
            data: data.to_vec(),
        }
        .encode()
        .into(),
    )
}

fn refused_count(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("drover_worker_reports_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

fn is_401(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(e, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_is_exchanged_once_for_a_credential_bound_to_one_worker() {
    let env = Env::start("join").await;
    let token = env.join_token(60_000, 1).await;
    let (socket, welcome) = env.hello(&token, "alpha").await;
    let ServerMessage::Welcome {
        credential: Some(credential),
        task_key,
        ..
    } = welcome
    else {
        panic!("expected a welcome with a credential, got {welcome:?}");
    };
    assert!(credential.starts_with("drover_worker_"), "{credential}");
    assert!(TaskVerifier::from_hex(&task_key).is_ok());
    drop(socket);

    // The token is spent: refused before the upgrade.
    let used = env.connect(&token).await.expect_err("a used join token");
    assert!(is_401(&used), "{used}");
    // Unknown and expired tokens too.
    let unknown = format!("drover_join_{}_{}", "0".repeat(16), "ab".repeat(32));
    assert!(is_401(&env.connect(&unknown).await.unwrap_err()));
    let short = env.join_token(1, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(is_401(&env.connect(&short).await.unwrap_err()));

    // The credential is the worker's from now on, without any token.
    let (socket, again) = env.hello(&credential, "alpha").await;
    assert!(
        matches!(
            again,
            ServerMessage::Welcome {
                credential: None,
                ..
            }
        ),
        "{again:?}"
    );
    drop(socket);
    // But only as itself.
    let (_, other) = env.hello(&credential, "beta").await;
    match other {
        ServerMessage::Reject {
            reason, permanent, ..
        } => {
            assert!(reason.contains("belongs to the worker"), "{reason}");
            assert!(permanent);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let names: Vec<String> = env
        .admin
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, vec!["alpha".to_string()]);

    // A credential opens nothing but the worker endpoint.
    let as_worker = Client::new(env.server.url(), Some(credential.clone()));
    let job = br#"{"tasks":[{"command":["true"]}]}"#.to_vec();
    for (method, path, body, want) in [
        (Method::GET, "/v1/tasks", None, 401),
        (Method::POST, "/v1/jobs", Some(job), 401),
        (Method::GET, "/v1/workers", None, 401),
        (Method::POST, "/v1/worker-tokens", Some(b"{}".to_vec()), 401),
        (Method::POST, "/v1/raft/vote", Some(b"{}".to_vec()), 403),
    ] {
        let (status, body) = as_worker.raw(method.clone(), path, body).await.unwrap();
        assert_eq!(
            status.as_u16(),
            want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert!(parsed["error"]["code"].is_string(), "{parsed}");
    }
    let listed = env.admin.worker_identities().await.unwrap();
    assert_eq!(listed.credentials.len(), 1);
    assert_eq!(listed.credentials[0].worker_name, "alpha");

    // Revoked: the connected worker is cut off and cannot come back with it.
    let (mut socket, _) = env.hello(&credential, "alpha").await;
    env.admin.revoke_worker_credential("alpha").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the session ends within 5 s")
        {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
    assert!(is_401(&env.connect(&credential).await.unwrap_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_and_ends_of_an_attempt_placed_on_another_worker_are_dropped() {
    let env = Env::start("fence").await;
    let token = env.join_token(60_000, 2).await;
    let (mut alpha, welcome) = env.hello(&token, "alpha").await;
    let ServerMessage::Welcome { task_key, .. } = welcome else {
        panic!("{welcome:?}");
    };
    let task = env
        .admin
        .submit_task(&TaskSpec::command(["echo", "real"]))
        .await
        .unwrap()
        .first;
    let start = recv_start(&mut alpha).await;
    assert_eq!(start.task, task);
    // The start is signed by the leader with the key the welcome named.
    TaskVerifier::from_hex(&task_key)
        .unwrap()
        .verify(&start)
        .expect("a signed start");

    // Another worker, with its own credential, claims alpha's attempt.
    let (mut beta, welcome) = env.hello(&token, "beta").await;
    assert!(
        matches!(welcome, ServerMessage::Welcome { .. }),
        "{welcome:?}"
    );
    beta.send(frame(task, start.attempt, b"forged\n"))
        .await
        .unwrap();
    send(
        &mut beta,
        &WorkerMessage::Finished(report(task, start.attempt, "forged\n")),
    )
    .await;
    // And alpha sends a chunk whose digest does not match.
    let mut damaged = frame(task, start.attempt, b"real\n").into_data().to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    alpha.send(Message::Binary(damaged.into())).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = env.metrics().await;
        if refused_count(&m, "not_placed_here") >= 2 && refused_count(&m, "bad_digest") >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not counted:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = env.admin.task(&task.to_string()).await.unwrap();
    assert_eq!(t.state, TaskState::Assigned, "beta's end is not alpha's");
    let (out, _) = env.admin.output(&task.to_string(), false, 0).await.unwrap();
    assert!(out.is_empty(), "nothing stored: {out:?}");

    // The worker it was placed on is heard.
    send(
        &mut alpha,
        &WorkerMessage::Started {
            task,
            attempt: start.attempt,
            gpus: Vec::new(),
        },
    )
    .await;
    alpha
        .send(frame(task, start.attempt, b"real\n"))
        .await
        .unwrap();
    send(
        &mut alpha,
        &WorkerMessage::Finished(report(task, start.attempt, "real\n")),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = env.admin.task(&task.to_string()).await.unwrap();
        if t.state == TaskState::Succeeded {
            assert_eq!(t.result.as_deref(), Some("real\n"));
            break;
        }
        assert!(Instant::now() < deadline, "{t:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (out, _) = env.admin.output(&task.to_string(), false, 0).await.unwrap();
    assert_eq!(&out[..], b"real\n");

    // An end whose digest does not match is dropped too, even from the right worker.
    let second = env
        .admin
        .submit_task(&TaskSpec::command(["true"]))
        .await
        .unwrap()
        .first;
    let start = loop {
        let s = tokio::select! {
            s = recv_start(&mut alpha) => s,
            s = recv_start(&mut beta) => s,
        };
        if s.task == second {
            break s;
        }
    };
    let mut bad = report(second, start.attempt, "x");
    bad.result = "y".into();
    let placed_on = env.admin.task(&second.to_string()).await.unwrap().worker;
    let placed_on_alpha = placed_on.as_deref() == Some("alpha");
    let socket = if placed_on_alpha {
        &mut alpha
    } else {
        &mut beta
    };
    send(socket, &WorkerMessage::Finished(bad)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused_count(&env.metrics().await, "bad_digest") < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.admin.task(&second.to_string()).await.unwrap().state,
        TaskState::Assigned
    );
}
