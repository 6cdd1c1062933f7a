//! The agent's side of the task socket (dynamic resources; the protocol is in
//! `drover_proto::task_socket`): it accepts a running task's request, checks its token,
//! and hands it to the agent's loop, which asks the server and answers.

use drover_proto::api::ResizeAnswer;
use drover_proto::task_socket::{MAX_REQUEST_BYTES, TaskReply, TaskRequest};
use drover_types::{Attempt, TaskId, parse_bytes, parse_cpus};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A task's resize, checked, for the agent's loop.
#[derive(Debug)]
pub struct ResizeAsk {
    pub task: TaskId,
    pub attempt: Attempt,
    pub cpu_milli: Option<u32>,
    pub memory_bytes: Option<u64>,
    /// The cluster's answer, or why there is none.
    pub reply: oneshot::Sender<Result<ResizeAnswer, String>>,
}

/// At most this many requests wait for the agent's loop; more are refused at once.
pub(crate) const QUEUE: usize = 64;
/// A connection that has not sent its request by then is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a task waits for the cluster's answer (a commit, or a reconnect).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The tokens of the running attempts: a token names an attempt from its launch to
/// its end.
#[derive(Clone, Debug, Default)]
pub struct TaskTokens {
    by_token: Arc<Mutex<HashMap<String, (TaskId, Attempt)>>>,
}

impl TaskTokens {
    /// A new random token for the attempt (256 bits, hex).
    pub fn issue(&self, task: TaskId, attempt: Attempt) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.lock().insert(token.clone(), (task, attempt));
        Some(token)
    }

    /// Forgets the attempt's token (it ended).
    pub fn revoke(&self, task: TaskId, attempt: Attempt) {
        self.lock().retain(|_, v| *v != (task, attempt));
    }

    fn find(&self, token: &str) -> Option<(TaskId, Attempt)> {
        self.lock().get(token).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (TaskId, Attempt)>> {
        self.by_token.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The listening socket, removed when dropped.
#[derive(Debug)]
pub struct TaskSocket {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for TaskSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl TaskSocket {
    /// Listens at `path` (a stale socket there is replaced), mode 0600, owned by
    /// `owner` (the task user's uid and gid) when tasks run as another user: only
    /// they (and root) can connect. Requests go to `asks`.
    pub fn bind(
        path: &Path,
        owner: Option<(u32, u32)>,
        tokens: TaskTokens,
        asks: mpsc::Sender<ResizeAsk>,
    ) -> std::io::Result<TaskSocket> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        // Closed first, then handed over: never open to anyone else in between.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        let accept = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let (tokens, asks) = (tokens.clone(), asks.clone());
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, &tokens, &asks).await {
                                tracing::debug!("task socket connection: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("task socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(TaskSocket {
            path: path.to_path_buf(),
            accept,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One connection: one request, one reply.
async fn serve(
    stream: UnixStream,
    tokens: &TaskTokens,
    asks: &mpsc::Sender<ResizeAsk>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let reply = match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => TaskReply::Error {
            message: "no request within 5 s".into(),
        },
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => answer(&line, tokens, asks).await,
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn answer(line: &str, tokens: &TaskTokens, asks: &mpsc::Sender<ResizeAsk>) -> TaskReply {
    let error = |message: String| TaskReply::Error { message };
    let request = match serde_json::from_str::<TaskRequest>(line.trim()) {
        Ok(r) => r,
        Err(e) => return error(format!("malformed request: {e}")),
    };
    let TaskRequest::Resize {
        token,
        cpus,
        memory,
    } = request;
    let Some((task, attempt)) = tokens.find(&token) else {
        return error("unknown task token: only a running attempt's own token is taken".into());
    };
    if cpus.is_none() && memory.is_none() {
        return error("name what to change: cpus, memory or both".into());
    }
    let cpu_milli = match cpus.as_deref().map(parse_cpus).transpose() {
        Ok(c) => c,
        Err(e) => return error(format!("cpus: {e}")),
    };
    let memory_bytes = match memory.as_deref().map(parse_bytes).transpose() {
        Ok(m) => m,
        Err(e) => return error(format!("memory: {e}")),
    };
    let (reply, answered) = oneshot::channel();
    let ask = ResizeAsk {
        task,
        attempt,
        cpu_milli,
        memory_bytes,
        reply,
    };
    if asks.try_send(ask).is_err() {
        return error("the agent is busy with other requests; try again".into());
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
        Ok(Ok(Ok(a))) => TaskReply::Resize(a),
        Ok(Ok(Err(why))) => error(why),
        Ok(Err(_)) => error("the agent lost its connection to the server; try again".into()),
        Err(_) => error("no answer from the cluster within 30 s".into()),
    }
}
