//! `drover cache ls|rm|clear`: the result cache (listing needs `read`; removing,
//! `operator`).

use crate::Global;
use crate::render;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use drover_proto::api::CacheEntryInfo;
use drover_types::format_bytes;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCmd,
}

#[derive(Debug, Subcommand)]
enum CacheCmd {
    /// List the live entries, oldest first: key, task that made it, hits, size, expiry
    #[command(alias = "list")]
    Ls,
    /// Remove one entry (its key, or a unique start of it): the next such task runs
    Rm(RmArgs),
    /// Remove every entry
    Clear,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The entry's key as `drover cache ls` shows it (a unique prefix is enough)
    key: String,
}

pub async fn cache(g: &Global, a: CacheArgs) -> Result<ExitCode> {
    let client = g.client()?;
    match a.command {
        CacheCmd::Ls => {
            let list = client.cache().await?;
            if g.json {
                render::print_json(&list)?;
            } else {
                print_table(&list.entries);
                eprintln!(
                    "{} entries, {} of {} (at most {} entries)",
                    list.entries.len(),
                    format_bytes(list.bytes),
                    format_bytes(list.max_bytes),
                    list.max_entries
                );
            }
        }
        CacheCmd::Rm(r) => {
            let key = full_key(&client, &r.key).await?;
            let removed = client.cache_remove(Some(&key)).await?;
            if g.json {
                render::print_json(&removed)?;
            } else {
                println!("removed the cache entry {key}");
            }
        }
        CacheCmd::Clear => {
            let removed = client.cache_remove(None).await?;
            if g.json {
                render::print_json(&removed)?;
            } else {
                println!("removed {} cache entries", removed.removed);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The whole key for a prefix of one.
async fn full_key(client: &drover_client::Client, given: &str) -> Result<String> {
    let given = given.trim().to_ascii_lowercase();
    if given.is_empty() || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{given:?} is not a cache key: keys are hex digits (see `drover cache ls`)");
    }
    if given.len() == 64 {
        return Ok(given);
    }
    let list = client.cache().await?;
    let matching: Vec<&CacheEntryInfo> = list
        .entries
        .iter()
        .filter(|e| e.key.starts_with(&given))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.key.clone()),
        [] => bail!("no cache entry has a key starting with {given}"),
        many => bail!(
            "{} cache entries have keys starting with {given}: give more digits",
            many.len()
        ),
    }
}

fn print_table(entries: &[CacheEntryInfo]) {
    let mut table = render::table(&[
        "KEY", "TASK", "HITS", "SIZE", "CREATED", "EXPIRES", "RESULT",
    ]);
    for e in entries {
        let mut preview: String = e
            .result
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        if preview.len() < e.result.trim_end().len() {
            preview.push('…');
        }
        table.add_row(vec![
            e.key.clone(),
            e.task.to_string(),
            e.hits.to_string(),
            format_bytes(e.size),
            render::when_utc(e.created_at),
            render::when_utc(e.expires_at),
            preview,
        ]);
    }
    println!("{table}");
}
