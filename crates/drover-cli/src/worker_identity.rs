//! `drover worker token create`, `drover worker list`, `drover worker revoke`: join
//! tokens and worker credentials (see ARCHITECTURE.md, "Worker identities").

use crate::Global;
use crate::render;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use drover_client::Client;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum WorkerAction {
    /// Join tokens: what a new worker presents once (`drover worker --join-token`)
    #[command(subcommand)]
    Token(TokenAction),
    /// List the workers with the identity each connects with
    List,
    /// Revoke a worker's credential: it is disconnected and cannot connect again with it
    Revoke(RevokeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a join token (shown once; the cluster keeps only its digest)
    Create(CreateArgs),
    /// List the join tokens still usable and the worker credentials (never secrets)
    List,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// How long the token may be used, e.g. 10m, 1h, 7d (at most 30d)
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    ttl: String,
    /// How many workers may join with it
    #[arg(long, default_value_t = 1, value_name = "N")]
    uses: u32,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The worker's name (or the credential's id)
    worker: String,
}

pub async fn run(g: &Global, action: WorkerAction) -> Result<ExitCode> {
    let client = g.client()?;
    match action {
        WorkerAction::Token(TokenAction::Create(a)) => create(g, &client, a).await,
        WorkerAction::Token(TokenAction::List) => list_tokens(g, &client).await,
        WorkerAction::List => crate::inspect::workers(g).await,
        WorkerAction::Revoke(a) => {
            client
                .revoke_worker_credential(&a.worker)
                .await
                .with_context(|| format!("cannot revoke the credential of {:?}", a.worker))?;
            if g.json {
                render::print_json(&serde_json::json!({"revoked": a.worker}))?;
            } else {
                println!("revoked the credential of {}", a.worker);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(g: &Global, client: &Client, a: CreateArgs) -> Result<ExitCode> {
    let ttl = humantime::parse_duration(&a.ttl)
        .with_context(|| format!("--ttl {:?} is not a duration (e.g. 10m, 1h, 7d)", a.ttl))?;
    if ttl.is_zero() {
        bail!("--ttl must be longer than zero");
    }
    if a.uses == 0 {
        bail!("--uses must be at least 1");
    }
    let created = client
        .create_join_token(Some(ttl.as_millis() as u64), Some(a.uses))
        .await
        .context("cannot create a join token")?;
    if g.json {
        render::print_json(&created)?;
    } else {
        // The secret alone on stdout (for `T=$(drover worker token create)`); the rest
        // on stderr.
        println!("{}", created.token);
        eprintln!(
            "join token {} for {} worker{}, valid {}: drover worker --join-token <token> (or DROVER_JOIN_TOKEN); it is shown only now",
            created.id,
            created.uses,
            if created.uses == 1 { "" } else { "s" },
            a.ttl,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_tokens(g: &Global, client: &Client) -> Result<ExitCode> {
    let ids = client.worker_identities().await?;
    if g.json {
        render::print_json(&ids)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = render::table(&["KIND", "ID", "WORKER", "USES LEFT"]);
    for c in &ids.credentials {
        table.add_row(vec![
            "credential".to_string(),
            c.id.clone(),
            c.worker_name.clone(),
            "-".into(),
        ]);
    }
    for t in &ids.join_tokens {
        table.add_row(vec![
            "join token".to_string(),
            t.id.clone(),
            "-".into(),
            t.uses_left.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
