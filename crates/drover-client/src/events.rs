//! The cluster's event stream (`GET /v1/events`, server-sent events).
//!
//! ```no_run
//! # async fn f(client: drover_client::Client) -> Result<(), drover_client::ClientError> {
//! use drover_client::{EventFilter, StreamItem};
//! let filter = EventFilter { jobs: vec![3], ..EventFilter::default() };
//! let mut events = client.events(&filter, None).await?;
//! loop {
//!     match events.next().await {
//!         Ok(StreamItem::Event(e)) => println!("{} {:?}", e.id, e.body),
//!         Ok(_) => {}
//!         // Reconnects with Last-Event-ID: nothing missed while the events are retained.
//!         Err(_) => events.resume().await?,
//!     }
//! }
//! # }
//! ```

use crate::client::{Client, ClientError};
use drover_proto::events::{ClusterEvent, EventId, ResetNotice};
use reqwest::{Method, Response};
use std::time::Duration;

/// Which events to receive; empty lists mean "all". Within a list any value matches;
/// across lists every one must.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub jobs: Vec<u64>,
    /// Task ids, keys or `JOB/KEY`.
    pub tasks: Vec<String>,
    /// `w3`, `3` or a worker's name.
    pub workers: Vec<String>,
    /// `task`, `worker`, `job`, `policy`.
    pub types: Vec<String>,
}

impl EventFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let join = |v: Vec<String>| v.join(",");
        if !self.jobs.is_empty() {
            q.push(("job", join(self.jobs.iter().map(u64::to_string).collect())));
        }
        if !self.tasks.is_empty() {
            q.push(("task", join(self.tasks.clone())));
        }
        if !self.workers.is_empty() {
            q.push(("worker", join(self.workers.clone())));
        }
        if !self.types.is_empty() {
            q.push(("type", join(self.types.clone())));
        }
        q
    }
}

/// One message of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    /// The stream is established, starting after `position`: anything that changes
    /// from now on arrives as an event.
    Open {
        position: EventId,
    },
    Event(ClusterEvent),
    /// Events were dropped between the client's position and what the server retains;
    /// the stream goes on from the oldest retained event.
    Reset(ResetNotice),
}

/// The server sends a comment every 10 s on an idle stream: this much silence means
/// the connection is gone.
const SILENCE: Duration = Duration::from_secs(35);

/// A live event stream. Keeps the id of the last event received, so that
/// [`EventStream::resume`] reconnects without a gap or a duplicate.
#[derive(Debug)]
pub struct EventStream {
    client: Client,
    filter: EventFilter,
    last: Option<EventId>,
    resp: Option<Response>,
    buf: Vec<u8>,
}

impl Client {
    /// Opens the event stream; with `since`, resumes after that event id.
    pub async fn events(
        &self,
        filter: &EventFilter,
        since: Option<EventId>,
    ) -> Result<EventStream, ClientError> {
        let mut s = EventStream {
            client: self.clone(),
            filter: filter.clone(),
            last: since,
            resp: None,
            buf: Vec::new(),
        };
        s.resume().await?;
        Ok(s)
    }
}

impl EventStream {
    /// The id of the last event (or reset) received, or where the stream started.
    pub fn last_id(&self) -> Option<EventId> {
        self.last
    }

    /// (Re)connects, resuming after the last id received.
    pub async fn resume(&mut self) -> Result<(), ClientError> {
        self.resp = None;
        self.buf.clear();
        let mut req = self
            .client
            .request(Method::GET, "/v1/events")
            .query(&self.filter.query())
            .header("accept", "text/event-stream");
        if let Some(id) = self.last {
            req = req.header("last-event-id", id.to_string());
        }
        self.resp = Some(self.client.send(req).await?);
        Ok(())
    }

    fn lost(&mut self, message: impl Into<String>) -> ClientError {
        self.resp = None;
        ClientError::StreamLost {
            url: self.client.base_url().to_string(),
            message: message.into(),
        }
    }

    /// The next message; `Err(StreamLost)` when the connection ended (call `resume`).
    pub async fn next(&mut self) -> Result<StreamItem, ClientError> {
        loop {
            while let Some(block) = take_block(&mut self.buf) {
                if let Some(item) = self.parse(&block)? {
                    return Ok(item);
                }
            }
            let Some(resp) = self.resp.as_mut() else {
                return Err(self.lost("not connected"));
            };
            match tokio::time::timeout(SILENCE, resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => return Err(self.lost("the server closed it")),
                Ok(Err(e)) => return Err(self.lost(e.to_string())),
                Err(_) => return Err(self.lost(format!("nothing heard for {SILENCE:?}"))),
            }
        }
    }

    /// One message block; `None` for comments (heartbeats) and unknown kinds.
    fn parse(&mut self, block: &str) -> Result<Option<StreamItem>, ClientError> {
        let mut kind = "message";
        let mut data = String::new();
        let mut id = None;
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value,
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                "id" => id = Some(value),
                _ => {}
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        let decode = |e: serde_json::Error| ClientError::Decode(format!("event {kind}: {e}"));
        let item = match kind {
            "open" => {
                #[derive(serde::Deserialize)]
                struct Open {
                    position: EventId,
                }
                let o: Open = serde_json::from_str(&data).map_err(decode)?;
                // A stream opened without a position starts from the server's.
                self.last.get_or_insert(o.position);
                StreamItem::Open {
                    position: o.position,
                }
            }
            "reset" => StreamItem::Reset(serde_json::from_str(&data).map_err(decode)?),
            "task" | "worker" | "job" | "policy" | "leader" => {
                StreamItem::Event(serde_json::from_str(&data).map_err(decode)?)
            }
            _ => return Ok(None),
        };
        if let Some(id) = id.and_then(|t| t.parse::<EventId>().ok()) {
            self.last = Some(id);
        }
        Ok(Some(item))
    }
}

/// Takes the first complete block (up to a blank line) out of `buf`.
fn take_block(buf: &mut Vec<u8>) -> Option<String> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            let block: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(String::from_utf8_lossy(&block).replace('\r', ""));
        }
        if buf[i] == b'\r' && buf[i + 1] == b'\n' && buf.get(i + 2) == Some(&b'\r') {
            let end = (i + 4).min(buf.len());
            let block: Vec<u8> = buf.drain(..end).collect();
            return Some(String::from_utf8_lossy(&block).replace('\r', ""));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines() {
        let mut buf = b"id: 1-0\nevent: task\ndata: {}\n\n: keep\n\nda".to_vec();
        assert_eq!(
            take_block(&mut buf).as_deref(),
            Some("id: 1-0\nevent: task\ndata: {}\n\n")
        );
        assert_eq!(take_block(&mut buf).as_deref(), Some(": keep\n\n"));
        assert_eq!(take_block(&mut buf), None);
        assert_eq!(buf, b"da");
    }
}
