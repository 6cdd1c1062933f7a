//! One running plugin process and the conversation with it: a writer task feeding
//! its stdin, a reader task routing its stdout (responses to their requests,
//! notifications to their attempts), a task logging its stderr, and a waiter that
//! reaps it. Every channel is bounded; no lock is held across I/O.

use crate::plugin::error::PluginError;
use crate::plugin::wire::{MAX_LINE_BYTES, Notification, Op, Request, Response};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// Notifications buffered per attempt before the reader waits for the attempt to
/// catch up (back pressure reaches the plugin through its stdout pipe).
const ATTEMPT_QUEUE: usize = 64;
/// Requests queued for the plugin's stdin.
const REQUEST_QUEUE: usize = 64;

/// Who is waiting for what. One lock, so that "the plugin is gone" and "register an
/// attempt" cannot cross: an attempt registered after the death is refused, one
/// registered before sees its channel closed.
#[derive(Default)]
struct Routes {
    pending: BTreeMap<u64, oneshot::Sender<Response>>,
    attempts: BTreeMap<(u64, u32), mpsc::Sender<Notification>>,
    /// Why the plugin is gone, once it is.
    gone: Option<String>,
}

pub(crate) struct PluginConnection {
    path: PathBuf,
    pid: Option<u32>,
    next_id: AtomicU64,
    to_plugin: mpsc::Sender<Vec<u8>>,
    routes: Mutex<Routes>,
    request_timeout: Duration,
    /// Sending on it, or dropping it with the connection, kills the process.
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

impl PluginConnection {
    /// Starts the executable with `env` as its whole environment.
    pub(crate) fn spawn(
        path: &Path,
        env: &BTreeMap<String, String>,
        request_timeout: Duration,
    ) -> Result<Arc<PluginConnection>, PluginError> {
        let mut child = tokio::process::Command::new(path)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a terminal's Ctrl-C to the worker does not reach it
            // directly; the worker ends it by closing its stdin (or killing it).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(PluginError::Spawn)?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(PluginError::Spawn(std::io::Error::other(
                "the plugin's standard streams were not piped",
            )));
        };
        let (to_plugin, mut requests) = mpsc::channel::<Vec<u8>>(REQUEST_QUEUE);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let conn = Arc::new(PluginConnection {
            path: path.to_path_buf(),
            pid,
            next_id: AtomicU64::new(1),
            to_plugin,
            routes: Mutex::new(Routes::default()),
            request_timeout,
            kill: Mutex::new(Some(kill_tx)),
        });

        let mut stdin = stdin;
        tokio::spawn(async move {
            while let Some(line) = requests.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    break; // the reader sees the end and says why
                }
            }
            // Dropping stdin is the protocol's "stop everything and exit".
        });

        let (status_tx, status_rx) = watch::channel::<Option<String>>(None);
        tokio::spawn(async move {
            let mut kill_rx = kill_rx;
            let status = tokio::select! {
                s = child.wait() => s,
                _ = &mut kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("cannot wait for it: {e}"),
            };
            let _ = status_tx.send(Some(text));
        });

        let shown = path.display().to_string();
        tokio::spawn(async move {
            let mut err = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match read_line(&mut err, &mut buf).await {
                    Ok(LineRead::Eof) | Err(_) => break,
                    Ok(LineRead::Line | LineRead::TooLong) => {
                        let line = String::from_utf8_lossy(&buf);
                        tracing::info!(plugin = %shown, "{}", line.trim_end());
                    }
                }
            }
        });

        let weak = Arc::downgrade(&conn);
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout);
            let mut buf = Vec::new();
            let reason = loop {
                buf.clear();
                match read_line(&mut out, &mut buf).await {
                    Ok(LineRead::Eof) => break None,
                    Ok(LineRead::TooLong) => {
                        break Some(
                            PluginError::LineTooLong {
                                limit: MAX_LINE_BYTES,
                            }
                            .to_string(),
                        );
                    }
                    Err(e) => break Some(format!("reading its output: {e}")),
                    Ok(LineRead::Line) => {}
                }
                let Some(conn) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = conn.route(&buf).await {
                    break Some(e.to_string());
                }
            };
            let Some(conn) = weak.upgrade() else {
                return;
            };
            // A protocol violation ends the plugin: nothing it says can be trusted.
            let reason = match reason {
                Some(r) => {
                    tracing::error!(plugin = %conn.path.display(), "{r}; stopping it");
                    conn.gone(format!("{r} (stopped by the worker)"));
                    conn.kill_process();
                    return;
                }
                None => {
                    let mut status_rx = status_rx;
                    let status = tokio::time::timeout(
                        Duration::from_secs(2),
                        status_rx.wait_for(Option::is_some),
                    )
                    .await
                    .ok()
                    .and_then(|r| r.ok().and_then(|s| s.clone()));
                    match status {
                        Some(s) => format!("it exited ({s})"),
                        None => "it closed its stdout".to_string(),
                    }
                }
            };
            tracing::warn!(plugin = %conn.path.display(), "driver plugin gone: {reason}");
            conn.gone(reason);
        });
        Ok(conn)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.lock().gone.is_some()
    }

    pub(crate) fn gone_reason(&self) -> Option<String> {
        self.lock().gone.clone()
    }

    /// Opens the channel on which an attempt's notifications arrive. `Err` when the
    /// plugin is already gone.
    pub(crate) fn register(
        &self,
        key: (u64, u32),
    ) -> Result<mpsc::Receiver<Notification>, PluginError> {
        let (tx, rx) = mpsc::channel(ATTEMPT_QUEUE);
        let mut routes = self.lock();
        if let Some(reason) = &routes.gone {
            return Err(PluginError::Gone {
                reason: reason.clone(),
            });
        }
        routes.attempts.insert(key, tx);
        Ok(rx)
    }

    pub(crate) fn forget(&self, key: (u64, u32)) {
        self.lock().attempts.remove(&key);
    }

    /// Sends a request and waits for its response's `result`.
    pub(crate) async fn request(&self, op: Op<'_>) -> Result<serde_json::Value, PluginError> {
        let name = op_name(&op);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line =
            serde_json::to_vec(&Request { id, op }).map_err(|source| PluginError::Malformed {
                line: String::new(),
                source,
            })?;
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = self.lock();
            if let Some(reason) = &routes.gone {
                return Err(PluginError::Gone {
                    reason: reason.clone(),
                });
            }
            routes.pending.insert(id, tx);
        }
        let exchange = async {
            self.to_plugin
                .send(line)
                .await
                .map_err(|_| self.gone_error())?;
            rx.await.map_err(|_| self.gone_error())
        };
        let response = match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                self.lock().pending.remove(&id);
                return Err(PluginError::Timeout {
                    op: name,
                    timeout: self.request_timeout,
                });
            }
        };
        if response.ok {
            Ok(response.result)
        } else {
            let e = response
                .error
                .unwrap_or_else(|| crate::plugin::wire::WireError {
                    code: "unknown".into(),
                    message: "the plugin said ok: false without an error".into(),
                });
            Err(PluginError::Refused {
                op: name,
                code: e.code,
                message: e.message,
            })
        }
    }

    fn gone_error(&self) -> PluginError {
        PluginError::Gone {
            reason: self
                .gone_reason()
                .unwrap_or_else(|| "it stopped answering".into()),
        }
    }

    /// Delivers one line: a response to its waiter, a notification to its attempt.
    async fn route(&self, line: &[u8]) -> Result<(), PluginError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let malformed = |source| PluginError::Malformed {
            line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(line).map_err(malformed)?;
        if value.get("id").is_some() {
            let response: Response = serde_json::from_value(value).map_err(malformed)?;
            let waiter = self.lock().pending.remove(&response.id);
            match waiter {
                Some(w) => {
                    let _ = w.send(response);
                }
                // Its requester gave up (timeout): nothing to do.
                None => tracing::debug!(id = response.id, "late plugin response dropped"),
            }
            return Ok(());
        }
        let note: Notification = serde_json::from_value(value).map_err(malformed)?;
        let key = note.attempt_key();
        let route = self.lock().attempts.get(&key).cloned();
        match route {
            // Waits when the attempt is behind: back pressure, never a dropped exit.
            Some(tx) => {
                let _ = tx.send(note).await;
            }
            None => tracing::debug!(
                task = key.0,
                attempt = key.1,
                "notification for an attempt nobody follows"
            ),
        }
        Ok(())
    }

    /// Marks the plugin gone, fails every waiting request and closes every attempt's
    /// channel (each attempt then ends as failed, with this reason).
    fn gone(&self, reason: String) {
        let (pending, attempts) = {
            let mut routes = self.lock();
            routes.gone.get_or_insert(reason);
            (
                std::mem::take(&mut routes.pending),
                std::mem::take(&mut routes.attempts),
            )
        };
        drop(pending);
        drop(attempts);
    }

    /// Kills the process (its reader then reports it gone, if it is not already).
    pub(crate) fn kill_process(&self) {
        let kill = self.kill.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(k) = kill {
            let _ = k.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PluginConnection {
    fn drop(&mut self) {
        tracing::debug!(plugin = %self.path.display(), "closing the driver plugin");
    }
}

fn op_name(op: &Op<'_>) -> &'static str {
    match op {
        Op::Describe { .. } => "describe",
        Op::Start(_) => "start",
        Op::Stop { .. } => "stop",
        Op::Status { .. } => "status",
        Op::Usage { .. } => "usage",
        Op::Logs { .. } => "logs",
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its newline) of at most [`MAX_LINE_BYTES`].
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<LineRead> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = (&mut *reader).take(limit).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(LineRead::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(LineRead::Line);
    }
    if buf.len() > MAX_LINE_BYTES {
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line) // the last line, without a newline
}
