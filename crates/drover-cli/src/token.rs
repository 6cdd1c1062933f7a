//! `drover token create|list|revoke`: client ACL tokens (needs an admin credential,
//! e.g. the cluster token that the local server's data directory holds).

use crate::Global;
use crate::jobfile::parse_duration_ms;
use crate::render;
use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use drover_proto::api::{TokenInfo, TokenRequest};
use drover_types::{Millis, Role};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCmd,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token and print its secret (shown this once; only its hash is kept)
    Create(CreateArgs),
    /// List the tokens: id, name, role, namespace, created, expires, revoked
    List,
    /// Revoke a token: every server refuses it, and closes its open streams, within 1 s
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// What the token may do: read, submit (read, submit, cancel its own),
    /// operator (also policies, drain, cancel anything), admin (everything)
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// How long it lasts (`1h`, `30d`) [default: until revoked]
    #[arg(long, value_parser = parse_duration_ms)]
    ttl: Option<u64>,
    /// Confine it to tasks of this owner: it submits as this owner and sees and
    /// cancels only such tasks
    #[arg(long)]
    namespace: Option<String>,
    /// A label for people (`ci`, `alice`)
    #[arg(long, default_value = "")]
    name: String,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The token's id (`drover token list`; the number in `drv_<id>_…`)
    id: u64,
}

fn parse_role(text: &str) -> Result<Role> {
    Role::parse(text)
        .ok_or_else(|| anyhow!("{text:?} is not a role: use read, submit, operator or admin"))
}

pub async fn token(g: &Global, a: TokenArgs) -> Result<ExitCode> {
    let client = g.client()?;
    match a.command {
        TokenCmd::Create(c) => {
            let created = client
                .create_token(&TokenRequest {
                    role: c.role,
                    name: c.name,
                    namespace: c.namespace,
                    ttl_ms: c.ttl,
                })
                .await?;
            if g.json {
                render::print_json(&created)?;
            } else {
                // The secret alone on stdout, so `$(drover token create …)` is it;
                // what it is, on stderr.
                println!("{}", created.secret);
                eprintln!(
                    "token {} ({}{}{}): keep the secret above; it is not shown again",
                    created.token.id,
                    created.token.role,
                    created
                        .token
                        .namespace
                        .as_deref()
                        .map(|n| format!(", namespace {n}"))
                        .unwrap_or_default(),
                    created
                        .token
                        .expires_at
                        .map(|e| format!(", expires {}", render::when_utc(e)))
                        .unwrap_or_default(),
                );
            }
        }
        TokenCmd::List => {
            let list = client.tokens().await?;
            if g.json {
                render::print_json(&list)?;
            } else {
                print_table(&list.tokens);
            }
        }
        TokenCmd::Revoke(r) => {
            let t = client.revoke_token(r.id).await?;
            if g.json {
                render::print_json(&t)?;
            } else {
                println!("token {} ({}) revoked", t.id, t.role);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(tokens: &[TokenInfo]) {
    let mut table = render::table(&[
        "ID",
        "NAME",
        "ROLE",
        "NAMESPACE",
        "CREATED",
        "EXPIRES",
        "REVOKED",
    ]);
    let now = Millis(render::now_ms());
    for t in tokens {
        let expires = match t.expires_at {
            None => "never".to_string(),
            Some(e) if e <= now => format!("{} (expired)", render::when_utc(e)),
            Some(e) => render::when_utc(e),
        };
        table.add_row(vec![
            t.id.to_string(),
            t.name.clone(),
            t.role.to_string(),
            t.namespace.clone().unwrap_or_else(|| "-".into()),
            render::when_utc(t.created_at),
            expires,
            t.revoked_at
                .map(render::when_utc)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{table}");
}
