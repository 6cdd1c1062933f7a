//! The server's limits on what a worker sends, driven by a hand-rolled worker over a
//! real WebSocket: a message over `max_worker_message_bytes` ends the connection (the
//! server does not buffer it), and the worker can join again.

use drover_proto::worker::{PROTOCOL_VERSION, ServerMessage, WORKER_CONNECT_PATH, WorkerMessage};
use drover_server::ServerConfig;
use drover_types::{Resources, WorkerSpec, WorkerUsage};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Long enough for the server to react to a message it refuses.
const LONG: Duration = Duration::from_secs(5);
/// How long a connection must stay open to count as kept.
const SHORT: Duration = Duration::from_secs(1);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(addr: std::net::SocketAddr, token: &str) -> Socket {
    let url = format!("ws://{addr}{WORKER_CONNECT_PATH}");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let hello = WorkerMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        spec: WorkerSpec {
            name: "big-mouth".into(),
            capacity: Resources::cpus(1000),
            ..WorkerSpec::default()
        },
        kill_grace_ms: 100,
        running: vec![],
        finished: vec![],
    };
    send(&mut socket, &serde_json::to_string(&hello).unwrap()).await;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => {
                match serde_json::from_str::<ServerMessage>(&t).unwrap() {
                    ServerMessage::Welcome { .. } => return socket,
                    other => panic!("expected a welcome, got {other:?}"),
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn send(socket: &mut Socket, text: &str) {
    socket
        .send(Message::Text(text.to_string().into()))
        .await
        .expect("send");
}

/// Waits up to `wait` for the server to end the connection; false if it is still open.
async fn ended(socket: &mut Socket, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn a_message_over_the_limit_ends_the_connection_and_the_worker_can_rejoin() {
    let dir = std::env::temp_dir().join(format!("drover-worker-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ServerConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.heartbeat_interval = Duration::from_millis(200);
    // Plain HTTP: this test speaks the worker protocol over a raw WebSocket; the same
    // protocol over TLS is `worker_protocol.rs`'s.
    config.tls = drover_server::TlsMode::Insecure;
    config.input_limits.max_worker_message_bytes = 64 << 10;
    let server = drover_server::start(config).await.expect("server starts");
    let token = server.node.token.as_str().to_string();

    // A heartbeat padded to 200 KiB is never decoded: the socket refuses it by its size.
    let mut socket = join(server.addr, &token).await;
    let heartbeat = WorkerMessage::Heartbeat {
        seq: 1,
        usage: WorkerUsage::default(),
        tasks: vec![],
        load: None,
        data: None,
    };
    let small = serde_json::to_string(&heartbeat).unwrap();
    send(&mut socket, &small).await;
    assert!(!ended(&mut socket, SHORT).await, "a small message is taken");
    let big = format!(
        "{}, \"pad\": \"{}\"}}",
        small.trim_end_matches('}'),
        "x".repeat(200 << 10)
    );
    let _ = socket.send(Message::Text(big.into())).await;
    assert!(
        ended(&mut socket, LONG).await,
        "a message over the limit ends the connection"
    );

    // So does an oversized binary (output) message.
    let mut socket = join(server.addr, &token).await;
    let _ = socket
        .send(Message::Binary(vec![0u8; 100 << 10].into()))
        .await;
    assert!(ended(&mut socket, LONG).await);

    // The worker joins again, and the server still serves.
    let mut socket = join(server.addr, &token).await;
    send(&mut socket, &small).await;
    assert!(!ended(&mut socket, SHORT).await);
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("drover_input_limit_hits_total{limit=\"worker_message\"} 2"),
        "{metrics}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
