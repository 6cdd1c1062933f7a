//! `drover events`, and the waker that lets `wait`, `run` and `submit --wait` react to
//! the event stream instead of polling.

use crate::Global;
use crate::render;
use anyhow::{Context, Result};
use clap::Args;
use drover_client::{Client, ClientError, EventFilter, EventStream, StreamItem};
use drover_proto::events::{ClusterEvent, EventBody, EventId};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this job's events (repeatable, or comma-separated)
    #[arg(long = "job", value_delimiter = ',')]
    jobs: Vec<u64>,
    /// Only this task's events: an id, a key or JOB/KEY (repeatable)
    #[arg(long = "task")]
    tasks: Vec<String>,
    /// Only this worker's events: w3, 3 or a name (repeatable)
    #[arg(long = "worker")]
    workers: Vec<String>,
    /// Only these kinds: task, worker, job, policy, leader (repeatable, or comma-separated)
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<String>,
    /// Start after this event id (INDEX-N, as printed); default: from now on
    #[arg(long)]
    since: Option<String>,
}

pub async fn events(g: &Global, a: EventsArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let filter = EventFilter {
        jobs: a.jobs,
        tasks: a.tasks,
        workers: a.workers,
        types: a.types,
    };
    let since = a
        .since
        .as_deref()
        .map(str::parse::<EventId>)
        .transpose()
        .context("--since")?;
    let mut stream = client.events(&filter, since).await?;
    let mut out = std::io::stdout().lock();
    loop {
        let item = match stream.next().await {
            Ok(item) => item,
            Err(e @ ClientError::StreamLost { .. }) => {
                eprintln!("{e}; reconnecting after {}", show_last(&stream));
                reconnect(&mut stream).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match item {
            StreamItem::Open { .. } => continue,
            StreamItem::Reset(r) => {
                if g.json {
                    let mut v = serde_json::to_value(&r)?;
                    v["type"] = "reset".into();
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "reset: {}", r.message)?;
                }
            }
            StreamItem::Event(e) => {
                if g.json {
                    writeln!(out, "{}", serde_json::to_string(&e)?)?;
                } else {
                    writeln!(out, "{}", describe(&e))?;
                }
            }
        }
        out.flush()?;
    }
}

fn show_last(s: &EventStream) -> String {
    s.last_id()
        .map(|i| i.to_string())
        .unwrap_or_else(|| "the start".into())
}

/// Reconnects with the last id received, retrying for up to ~30 s.
async fn reconnect(stream: &mut EventStream) -> Result<()> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match stream.resume().await {
            Ok(()) => return Ok(()),
            // The credential was refused (revoked, expired, or its role changed):
            // trying again cannot help.
            Err(
                e @ ClientError::Api {
                    status: 401 | 403, ..
                },
            ) => return Err(e.into()),
            Err(e) if tries < 20 => {
                tries += 1;
                if tries == 1 {
                    eprintln!("reconnecting: {e}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One line per event, for people.
pub fn describe(e: &ClusterEvent) -> String {
    let what = match &e.body {
        EventBody::Task {
            task,
            job,
            state,
            attempt,
            worker,
            outcome,
            failure,
            cached_from,
            ..
        } => {
            let mut parts = Vec::new();
            if let Some(from) = cached_from {
                parts.push(format!("cached from task {from}"));
            }
            if attempt.0 > 0 {
                parts.push(format!("attempt {}", attempt.0));
            }
            if let Some(w) = worker {
                parts.push(format!("w{}", w.0));
            }
            if let Some(o) = outcome {
                parts.push(render_outcome(o));
            } else if let Some(f) = failure {
                parts.push(format!("{f:?}").to_lowercase());
            }
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            };
            format!("task {task} {}{detail}  [job {job}]", render::state(*state))
        }
        EventBody::Worker {
            worker,
            name,
            change,
            ..
        } => format!(
            "worker w{} {name} {}",
            worker.0,
            format!("{change:?}").to_lowercase()
        ),
        EventBody::Job {
            job,
            name,
            done,
            failed,
            total,
        } => {
            let name = if name.is_empty() {
                String::new()
            } else {
                format!(" {name}")
            };
            let failed = if *failed > 0 {
                format!(" ({failed} not succeeded)")
            } else {
                String::new()
            };
            format!("job {job}{name}: {done}/{total} done{failed}")
        }
        EventBody::Policy { policy } => format!(
            "policy {}",
            serde_json::to_string(policy).unwrap_or_default()
        ),
        EventBody::Leader { term, leader } => format!("leader: server {leader} (term {term})"),
    };
    format!("{:<10} {what}", e.id.to_string())
}

fn render_outcome(o: &drover_types::Outcome) -> String {
    use drover_types::Outcome;
    match o {
        Outcome::Exited { code } => format!("exit {code}"),
        Outcome::Signaled { signal } => format!("signal {signal}"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// Wakes a waiting command when something it watches may have changed: on each event
/// of its filter (or a reset), instead of polling. When the stream drops it reconnects
/// after the last id received; when the server has no event stream it says so and
/// falls back to polling.
pub struct Waker {
    stream: Option<EventStream>,
}

const POLL: Duration = Duration::from_millis(200);

impl Waker {
    /// Opens the stream and waits until it is established, so that any change after
    /// this returns is seen by the caller's next check or wakes it.
    pub async fn open(client: &Client, filter: EventFilter) -> Result<Waker> {
        match client.events(&filter, None).await {
            // The first message (`open`) says the stream is established.
            Ok(mut s) => match s.next().await {
                Ok(_) => Ok(Waker { stream: Some(s) }),
                Err(e) => {
                    eprintln!("event stream unavailable ({e}); checking every 200ms instead");
                    Ok(Waker { stream: None })
                }
            },
            Err(ClientError::Api { status: 404, .. }) => {
                eprintln!(
                    "this server has no event stream (/v1/events); checking every 200ms instead"
                );
                Ok(Waker { stream: None })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Returns when an event arrived (or, without a stream, after a poll interval).
    pub async fn wait(&mut self) -> Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            tokio::time::sleep(POLL).await;
            return Ok(());
        };
        loop {
            match stream.next().await {
                Ok(StreamItem::Open { .. }) => continue,
                Ok(_) => return Ok(()),
                Err(e @ ClientError::StreamLost { .. }) => {
                    eprintln!("{e}; reconnecting after event {}", show_last(stream));
                    if let Err(e) = reconnect(stream).await {
                        eprintln!("could not reconnect ({e}); checking every 200ms instead");
                        self.stream = None;
                    }
                    // Something may have changed meanwhile: let the caller check.
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
