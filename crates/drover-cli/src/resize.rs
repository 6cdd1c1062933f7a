//! `drover resize`: dynamic resources from the command line (a task resizes itself
//! with `drover-task resize`, `src/task_main.rs`).

use crate::{Global, render};
use anyhow::{Result, bail};
use clap::Args;
use drover_proto::api::{ResizeBody, ResizeInfo};
use drover_types::{format_bytes, format_cpus};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// The running task (id or key)
    task: String,
    /// Cores its attempt holds from now on: 4, 0.5, 250m
    #[arg(long)]
    cpus: Option<String>,
    /// Memory its attempt holds (and may use) from now on: 8G, 512MiB
    #[arg(long)]
    memory: Option<String>,
}

/// Asks for the new amounts; granted prints what the task holds now, refused exits
/// with the reason (status 409 from the server) and a non-zero code.
pub async fn resize(g: &Global, a: ResizeArgs) -> Result<ExitCode> {
    if a.cpus.is_none() && a.memory.is_none() {
        bail!("name what to change: --cpus, --memory or both");
    }
    let body = ResizeBody {
        cpus: a.cpus,
        memory: a.memory,
    };
    let answer = g.client()?.resize_task(&a.task, &body).await?;
    if g.json {
        render::print_json(&answer)?;
    } else {
        println!("resized task {}: now {}", answer.task, answer.resources);
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `drover status`'s resize history.
pub fn history_line(r: &ResizeInfo) -> String {
    let mut asked = Vec::new();
    if let Some(c) = r.cpu_milli {
        asked.push(format!("{} cpu", format_cpus(c)));
    }
    if let Some(m) = r.memory_bytes {
        asked.push(format!("{} memory", format_bytes(m)));
    }
    let decision = match (&r.reason, r.granted) {
        (_, true) => "granted".to_string(),
        (Some(why), false) => format!("refused: {why}"),
        (None, false) => "refused".to_string(),
    };
    format!(
        "{} · attempt {} · {} · {decision}",
        render::when(Some(r.at)),
        r.attempt,
        asked.join(", ")
    )
}
