//! `drover --json events …` running in the background, its JSON lines on a channel:
//! what the event-stream tests read, from one server or from a group.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub struct EventLines {
    child: Child,
    lines: Receiver<Value>,
}

impl EventLines {
    /// Starts `command` (a `drover … --json events …` command line) and waits a moment
    /// for it to connect, so that what happens next is in its stream.
    pub fn spawn(mut command: Command) -> EventLines {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("drover events");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        EventLines { child, lines }
    }

    /// Lines until `done` accepts one (that one included); panics after `super::SLOW`.
    pub fn until(&self, what: &str, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + super::SLOW;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    let stop = done(&v);
                    got.push(v);
                    if stop {
                        return got;
                    }
                }
                Err(_) => panic!("no {what} within {:?}; got {got:#?}", super::SLOW),
            }
        }
    }
}

impl Drop for EventLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event's id as the pair it compares as.
pub fn id_of(v: &Value) -> (u64, u32) {
    let s = v["id"].as_str().expect("an id");
    let (i, n) = s.split_once('-').expect("INDEX-N");
    (i.parse().unwrap(), n.parse().unwrap())
}
