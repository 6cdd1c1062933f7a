//! The autoscaler on the command line: `drover server --autoscale docker ...` and
//! `drover autoscale` (what it manages and why it did what it did).

use crate::Global;
use crate::config::{parse_count, parse_duration};
use crate::render;
use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use drover_server::autoscale::decision::WorkerSize;
use drover_server::autoscale::{AutoscaleConfig, ProviderKind};
use drover_types::{format_bytes, parse_bytes, parse_cpus};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProviderArg {
    /// Worker containers of the local Docker engine, from the image that
    /// scripts/build-worker-image.sh builds
    Docker,
}

/// `drover server` flags of the autoscaler.
#[derive(Debug, Args)]
pub struct AutoscaleArgs {
    /// Start and stop workers from the queue with this provider (the leader does)
    #[arg(long, value_name = "PROVIDER")]
    autoscale: Option<ProviderArg>,
    /// Managed workers kept at least [default: 0]
    #[arg(long, value_name = "N", requires = "autoscale")]
    autoscale_min: Option<String>,
    /// Managed workers at most, draining ones included [default: 3]
    #[arg(long, value_name = "N", requires = "autoscale")]
    autoscale_max: Option<String>,
    /// A managed worker idle this long is drained, then stopped [default: 5m]
    #[arg(long, value_name = "DURATION", requires = "autoscale")]
    autoscale_cooldown: Option<String>,
    /// A worker size it may start, CPUS:MEMORY (e.g. 2:4G); repeatable: a queued task
    /// no worker can hold gets the smallest size that holds it [default: 1:1G]
    #[arg(
        long = "autoscale-size",
        value_name = "CPUS:MEMORY",
        requires = "autoscale"
    )]
    autoscale_sizes: Vec<String>,
    /// The worker image [default: drover-worker:<this version>]
    #[arg(long, value_name = "IMAGE", requires = "autoscale")]
    autoscale_image: Option<String>,
    /// The URL the workers dial, or several comma-separated (the servers of a group)
    /// [default: with --peers, every peer's; else this server's, on loopback when it
    /// listens on every address: the containers share the host's network]
    #[arg(long, value_name = "URL", requires = "autoscale")]
    autoscale_server_url: Option<String>,
}

impl AutoscaleArgs {
    /// The autoscaler's settings, or none without `--autoscale`.
    pub fn config(&self) -> Result<Option<AutoscaleConfig>> {
        let Some(provider) = self.autoscale else {
            return Ok(None);
        };
        let mut c = AutoscaleConfig::new(match provider {
            ProviderArg::Docker => ProviderKind::Docker,
        });
        if let Some(n) = &self.autoscale_min {
            c.min = parse_count(n).map_err(|e| anyhow!("--autoscale-min: {e}"))?;
        }
        if let Some(n) = &self.autoscale_max {
            c.max = parse_count(n).map_err(|e| anyhow!("--autoscale-max: {e}"))?;
        }
        if c.max == 0 || c.min > c.max {
            bail!(
                "--autoscale-max ({}) must be at least 1 and at least --autoscale-min ({})",
                c.max,
                c.min
            );
        }
        if let Some(d) = &self.autoscale_cooldown {
            c.cooldown = parse_duration(d).map_err(|e| anyhow!("--autoscale-cooldown: {e}"))?;
        }
        if !self.autoscale_sizes.is_empty() {
            let mut sizes = self
                .autoscale_sizes
                .iter()
                .map(|s| parse_size(s))
                .collect::<Result<Vec<_>>>()?;
            sizes.sort();
            sizes.dedup();
            c.sizes = sizes;
        }
        if let Some(image) = &self.autoscale_image {
            c.image = image.clone();
        }
        c.server_url = self.autoscale_server_url.clone();
        Ok(Some(c))
    }
}

/// `2:4G` -> 2000 millicores, 4 GiB.
fn parse_size(text: &str) -> Result<WorkerSize> {
    let (cpus, memory) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--autoscale-size {text:?}: give CPUS:MEMORY, e.g. 2:4G"))?;
    let cpu_milli = parse_cpus(cpus).map_err(|e| anyhow!("--autoscale-size {text:?}: {e}"))?;
    let memory_bytes =
        parse_bytes(memory).map_err(|e| anyhow!("--autoscale-size {text:?}: {e}"))?;
    if cpu_milli == 0 || memory_bytes == 0 {
        bail!("--autoscale-size {text:?}: a worker needs some cpu and some memory");
    }
    Ok(WorkerSize {
        cpu_milli,
        memory_bytes,
    })
}

fn size_text(cpu_milli: u32, memory_bytes: u64) -> String {
    format!(
        "{} cpu, {}",
        cpu_milli as f64 / 1000.0,
        format_bytes(memory_bytes)
    )
}

/// `drover autoscale`.
pub async fn show(g: &Global) -> Result<ExitCode> {
    let status = g.client()?.autoscale().await?;
    if g.json {
        render::print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !status.enabled {
        println!("autoscaling is off (start the server with --autoscale docker)");
        return Ok(ExitCode::SUCCESS);
    }
    let sizes: Vec<String> = status
        .sizes
        .iter()
        .map(|s| size_text(s.cpu_milli, s.memory_bytes))
        .collect();
    println!(
        "provider {}: {} to {} workers; sizes {}; idle workers drained after {} s",
        status.provider.as_deref().unwrap_or("?"),
        status.min,
        status.max,
        sizes.join(" | "),
        status.cooldown_ms / 1000
    );
    if !status.leader {
        println!("this server does not lead the group: ask the leader for workers and decisions");
    }
    if let Some(e) = &status.error {
        println!("error: {e}");
    }
    let mut table = render::table(&["WORKER", "STATE", "SIZE", "TASKS", "IDLE", "INSTANCE"]);
    for w in &status.workers {
        table.add_row(vec![
            w.name.clone(),
            w.state.clone(),
            size_text(w.size.cpu_milli, w.size.memory_bytes),
            w.tasks.to_string(),
            w.idle_ms
                .map(|ms| format!("{} s", ms / 1000))
                .unwrap_or_else(|| "-".into()),
            w.instance.chars().take(12).collect(),
        ]);
    }
    println!("{table}");
    if !status.decisions.is_empty() {
        println!("latest decisions:");
        for d in &status.decisions {
            let error = d
                .error
                .as_ref()
                .map(|e| format!(" (failed: {e})"))
                .unwrap_or_default();
            println!("  {} {}: {}{error}", d.action, d.worker, d.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_cpus_and_memory() {
        let s = parse_size("2:4G").unwrap();
        assert_eq!((s.cpu_milli, s.memory_bytes), (2000, 4 << 30));
        let s = parse_size("0.5:512M").unwrap();
        assert_eq!((s.cpu_milli, s.memory_bytes), (500, 512 << 20));
        for bad in ["2", "x:1G", "2:lots", "0:1G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
