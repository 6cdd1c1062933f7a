//! The server's input limits on the command line and in the `[server]` section of the
//! configuration file (`drover_server::input_limits`): result, output and worker
//! message sizes, header and body read timeouts.

use crate::config::{Layers, Printer, parse_duration, parse_size, show_duration, show_size};
use anyhow::{Context, Result};
use clap::Args;
use drover_server::input_limits::InputLimits;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct InputLimitArgs {
    /// Largest task result the server keeps (the start of stdout fed to dependents);
    /// a larger one is cut and marked truncated [default: 1M]
    #[arg(long, value_name = "SIZE")]
    max_result: Option<String>,
    /// Largest output stream (stdout or stderr) of one attempt the server stores; past
    /// it the stream ends with a "truncated" marker [default: 64M]
    #[arg(long, value_name = "SIZE")]
    max_output: Option<String>,
    /// Largest WebSocket message accepted from a worker; a larger one ends its
    /// connection [default: 64M]
    #[arg(long, value_name = "SIZE")]
    max_worker_message: Option<String>,
    /// A client must send a request's headers within this time; also how long an idle
    /// keep-alive connection stays open [default: 30s]
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// A client must send a request's body within this time (408 after) [default: 60s]
    #[arg(long, value_name = "DURATION")]
    body_timeout: Option<String>,
    /// Largest task checkpoint the server stores; a larger one is refused and the task
    /// resumes from its previous one [default: 256M]
    #[arg(long, value_name = "SIZE")]
    max_checkpoint: Option<String>,
}

pub fn settings(l: &Layers, a: &InputLimitArgs) -> Result<InputLimits> {
    let size = |flag: Option<&str>, name: &str, key: &str, default: &str| -> Result<usize> {
        let n = l
            .value(flag, name, "server", key, Some(default), |t| {
                let n = parse_size(t)?;
                anyhow::ensure!(n >= 1, "must be at least 1 byte");
                usize::try_from(n).context("too large")
            })?
            .expect("has a default");
        Ok(n)
    };
    let time = |flag: Option<&str>, name: &str, key: &str, default: &str| -> Result<Duration> {
        let d = l
            .value(flag, name, "server", key, Some(default), |t| {
                let d = parse_duration(t)?;
                anyhow::ensure!(d >= Duration::from_millis(100), "must be at least 100ms");
                Ok(d)
            })?
            .expect("has a default");
        Ok(d)
    };
    Ok(InputLimits {
        max_result_bytes: size(a.max_result.as_deref(), "--max-result", "max_result", "1M")?,
        max_output_bytes: size(a.max_output.as_deref(), "--max-output", "max_output", "64M")?
            as u64,
        max_worker_message_bytes: size(
            a.max_worker_message.as_deref(),
            "--max-worker-message",
            "max_worker_message",
            "64M",
        )?,
        header_read_timeout: time(
            a.header_timeout.as_deref(),
            "--header-timeout",
            "header_timeout",
            "30s",
        )?,
        body_read_timeout: time(
            a.body_timeout.as_deref(),
            "--body-timeout",
            "body_timeout",
            "60s",
        )?,
        max_checkpoint_bytes: size(
            a.max_checkpoint.as_deref(),
            "--max-checkpoint",
            "max_checkpoint",
            "256M",
        )? as u64,
    })
}

pub fn print(p: &mut Printer, limits: &InputLimits) {
    let t = p.section("server");
    t.insert(
        "max_result".into(),
        show_size(limits.max_result_bytes as u64),
    );
    t.insert("max_output".into(), show_size(limits.max_output_bytes));
    t.insert(
        "max_worker_message".into(),
        show_size(limits.max_worker_message_bytes as u64),
    );
    t.insert(
        "header_timeout".into(),
        show_duration(limits.header_read_timeout),
    );
    t.insert(
        "body_timeout".into(),
        show_duration(limits.body_read_timeout),
    );
    t.insert(
        "max_checkpoint".into(),
        show_size(limits.max_checkpoint_bytes),
    );
}
