//! `drover-task`: what a running task runs to talk to its agent (dynamic resources).
//!
//! `drover-task resize --cpus 4 --memory 8G` asks the agent, over the Unix socket named
//! by `DROVER_AGENT_SOCKET`, with the attempt's own `DROVER_TASK_TOKEN`, for a new
//! reservation. It prints the decision and exits 0 when granted (the new limits are in
//! force by then), 1 when refused or undecided. Std only: it starts in a few ms.

use drover_proto::task_socket::{SOCKET_ENV, TOKEN_ENV, TaskReply, TaskRequest};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: drover-task resize [--cpus N] [--memory SIZE]\n\
    Asks this task's agent to change what the running attempt holds: --cpus as cores \
    (4, 0.5, 250m), --memory as bytes (8G, 512MiB). Prints the decision; exits 0 when \
    granted, 1 when refused.";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drover-task: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("resize") => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => return Err(USAGE.to_string()),
    }
    let (mut cpus, mut memory) = (None, None);
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let slot = match name.as_str() {
            "--cpus" => &mut cpus,
            "--memory" => &mut memory,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(format!("{name} needs a value"))?,
        };
        *slot = Some(value);
    }
    if cpus.is_none() && memory.is_none() {
        return Err(format!("name what to change\n{USAGE}"));
    }
    let socket = std::env::var(SOCKET_ENV)
        .map_err(|_| format!("{SOCKET_ENV} is not set: run this from inside a Drover task"))?;
    let token = std::env::var(TOKEN_ENV)
        .map_err(|_| format!("{TOKEN_ENV} is not set: run this from inside a Drover task"))?;
    let request = TaskRequest::Resize {
        token,
        cpus,
        memory,
    };
    let mut stream = UnixStream::connect(&socket)
        .map_err(|e| format!("cannot reach the agent at {socket}: {e}"))?;
    // The agent waits up to 30 s for the cluster; a little more here.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(35)));
    let mut line = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| format!("no answer from the agent: {e}"))?;
    match serde_json::from_str::<TaskReply>(reply.trim()) {
        Ok(TaskReply::Resize(a)) if a.granted => {
            println!("granted: task {} now holds {}", a.task, a.resources);
            Ok(ExitCode::SUCCESS)
        }
        Ok(TaskReply::Resize(a)) => {
            println!(
                "refused: {}",
                a.reason.as_deref().unwrap_or("no reason given")
            );
            Ok(ExitCode::from(1))
        }
        Ok(TaskReply::Error { message }) => Err(message),
        Err(e) => Err(format!("a malformed answer from the agent: {e}")),
    }
}
