//! The `drover` command.

mod autoscale;
mod cache;
mod config;
mod daemons;
mod events;
mod input_limits;
mod inspect;
mod jobfile;
mod object_store_args;
mod render;
mod resize;
mod submit;
mod tls;
mod token;
mod top;
mod worker_identity;

use anyhow::{Result, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand};
use drover_client::{Client, discovery};
use std::path::PathBuf;
use std::process::ExitCode;

/// Drover: a distributed task scheduler. Start a cluster with `drover up`, then submit
/// work with `drover submit` or `drover run`.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server's URL, or several comma-separated (the servers of a group: any one
    /// that answers is used) [default: the local server's, from the data directory]
    #[arg(long, global = true, env = "DROVER_SERVER")]
    server: Option<String>,
    /// The credential: the cluster token, or a client token (`drover token create`)
    /// [default: the local server's token file]
    #[arg(long, global = true, env = "DROVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster's CA certificate, to check the servers' TLS certificates against
    /// [default: the local server's, tls/ca.crt in its data directory, when there is one]
    #[arg(long, global = true, env = "DROVER_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Where Drover keeps its files on this machine
    #[arg(long, global = true, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text, for scripts (`logs`: one JSON object per line)
    #[arg(long, global = true)]
    json: bool,
    /// Read the answering server's state as it is, without checking with the group's
    /// leader that it is up to date (faster; may miss a write acknowledged a moment ago)
    #[arg(long, global = true)]
    stale: bool,
}

impl Global {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(discovery::default_data_dir)
    }

    /// A client for the server named by the flags, or the local one.
    pub fn client(&self) -> Result<Client> {
        let data = self.data_dir();
        let server = match &self.server {
            Some(s) => s.clone(),
            None => discovery::local_endpoint(&data).ok_or_else(|| {
                anyhow!(
                    "no server given and none running here: start one with `drover up`, or pass --server URL (or set DROVER_SERVER)"
                )
            })?,
        };
        let token = self.token.clone().or_else(|| discovery::local_token(&data));
        let client = Client::new(server, token).stale(self.stale);
        Ok(match tls::client_config(self, None)? {
            Some(config) => client.with_tls((*config).clone())?,
            None => client,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a server and local workers in one process: the quickest way to a cluster
    Up(daemons::UpArgs),
    /// Run a server
    Server(daemons::ServerArgs),
    /// Run a worker agent that takes tasks from a server; or manage workers' join tokens
    /// and credentials (`drover worker token create`, `list`, `revoke`)
    Worker(daemons::WorkerArgs),
    /// Submit a task (`-- COMMAND ARGS...`) or a job file (`-f job.yaml`)
    Submit(submit::SubmitArgs),
    /// Submit, wait, print the output, and exit with the task's exit code
    Run(submit::SubmitArgs),
    /// Wait for tasks or jobs to finish, with a progress bar
    Wait(submit::WaitArgs),
    /// Print the cluster's events live (task states, workers, job progress, policy)
    Events(events::EventsArgs),
    /// A live terminal view: leader, tasks by state, throughput, every worker's usage
    Top(top::TopArgs),
    /// Show one task: state, why it is pending, attempts, usage, result
    Status(inspect::StatusArgs),
    /// List tasks
    List(inspect::ListArgs),
    /// Print a task's output
    Logs(inspect::LogsArgs),
    /// Cancel tasks or a job
    Cancel(inspect::CancelArgs),
    /// Change a running task's cpus or memory (dynamic resources)
    Resize(resize::ResizeArgs),
    /// Show a job's progress
    Job(inspect::JobArgs),
    /// List workers
    Workers,
    /// Show the autoscaler: its settings, the workers it manages, its latest decisions
    Autoscale,
    /// List the servers of a replicated group (role, term, progress, reachable); add or
    /// remove one
    Servers(inspect::ServersArgs),
    /// Stop placing tasks on a worker; the tasks it runs finish
    Drain(inspect::WorkerRefArgs),
    /// Place tasks on a drained worker again
    Resume(inspect::WorkerRefArgs),
    /// Show or switch the scheduling policy
    Policy(inspect::PolicyArgs),
    /// Cluster summary
    Cluster,
    /// Create, list and revoke client tokens with roles (admin only)
    Token(token::TokenArgs),
    /// The result cache: list entries, remove one, or clear it
    Cache(cache::CacheArgs),
    /// Create the cluster's CA and certificates for servers, workers and clients
    Tls(tls::TlsArgs),
    /// Print a shell completion script, e.g. `drover completions bash > /etc/bash_completion.d/drover`
    Completions(CompletionsArgs),
    /// (internal) Kills a worker's leftover task processes once that worker exits
    #[command(hide = true)]
    WorkerReaper(daemons::ReaperArgs),
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete for
    shell: clap_complete::Shell,
}

/// Parses the command line, or exits with clap's message; a negative number where none
/// is taken gets a message of its own, since clap's tip (`-- -1`) would start the task's
/// command here.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(text) = negative_value(&e) {
                eprintln!(
                    "error: unexpected argument '{text}': negative values are not taken here \
                     (only --priority may be negative; a size, duration or count is 0 or more)\n\n\
                     For more information, try '--help'."
                );
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

/// The offending argument of a parse error when it is a negative value (`-1`, `-5s`,
/// `-2G`) that clap took for a flag.
fn negative_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg))
            if arg
                .strip_prefix('-')
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '.')) =>
        {
            Some(arg.clone())
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    // Before any client exists: reqwest (rustls without a built-in provider) and
    // tokio-tungstenite panic at their first TLS client without a process default.
    drover_client::tls::install_provider();
    let cli = parse_cli();
    let daemon = matches!(
        cli.command,
        Cmd::Up(_) | Cmd::Server(_) | Cmd::Worker(_) | Cmd::WorkerReaper(_)
    );
    if daemon {
        // Before any secret is read: a task running as this process's user must not
        // read its environment or memory through /proc (see ARCHITECTURE.md,
        // "Confinement of tasks"). Exec resets it, so tasks are not affected.
        if let Err(e) = drover_exec::protect_agent_process() {
            eprintln!("warning: cannot make this process non-dumpable: {e}");
        }
    }
    if !daemon {
        quiet_exit_on_closed_stdout();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if daemon { "info,openraft=warn" } else { "warn" })
    });
    // Colour only for a person at a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Cmd::Up(a) => daemons::up(g, a).await,
        Cmd::Server(a) => daemons::server(g, a).await,
        Cmd::Worker(mut a) => match a.action.take() {
            Some(action) => worker_identity::run(g, action).await,
            None => daemons::worker(g, a).await,
        },
        Cmd::Submit(a) => submit::submit(g, a, false).await,
        Cmd::Run(a) => submit::submit(g, a, true).await,
        Cmd::Wait(a) => submit::wait(g, a).await,
        Cmd::Events(a) => events::events(g, a).await,
        Cmd::Top(a) => top::top(g, a).await,
        Cmd::Status(a) => inspect::status(g, a).await,
        Cmd::List(a) => inspect::list(g, a).await,
        Cmd::Logs(a) => inspect::logs(g, a).await,
        Cmd::Cancel(a) => inspect::cancel(g, a).await,
        Cmd::Resize(a) => resize::resize(g, a).await,
        Cmd::Job(a) => inspect::job(g, a).await,
        Cmd::Workers => inspect::workers(g).await,
        Cmd::Autoscale => autoscale::show(g).await,
        Cmd::Servers(a) => inspect::servers(g, &a).await,
        Cmd::Drain(a) => inspect::drain(g, a, true).await,
        Cmd::Resume(a) => inspect::drain(g, a, false).await,
        Cmd::Policy(a) => inspect::policy(g, a).await,
        Cmd::Cluster => inspect::cluster(g).await,
        Cmd::Token(a) => token::token(g, a).await,
        Cmd::Cache(a) => cache::cache(g, a).await,
        Cmd::Completions(a) => completions(g, a),
        Cmd::Tls(a) => tls::tls(g, a),
        Cmd::WorkerReaper(a) => daemons::reaper(a),
    }
}

fn completions(g: &Global, a: CompletionsArgs) -> Result<ExitCode> {
    if g.json {
        anyhow::bail!("a completion script is shell code: --json does not apply to it");
    }
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "drover", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `drover list | head` closes our stdout early: end quietly like other Unix tools.
///
/// Not by restoring SIGPIPE's default action: a client writing to a server that was
/// just killed would die of the signal (hyper's vectored socket writes do not ask for
/// `MSG_NOSIGNAL`) instead of getting an error and trying the next server; seen as a
/// `drover submit` killed by signal 13 in the failover test. SIGPIPE stays ignored, a
/// print to the closed stdout panics in `println!`, and this hook turns that panic into
/// the quiet exit (status 141, as a shell reports a SIGPIPE death).
fn quiet_exit_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stdout_reader_gone() {
            std::process::exit(141);
        }
        default(info)
    }));
}

/// True when stdout is a pipe or socket whose reading end is closed (poll reports an
/// error condition on it).
#[allow(unsafe_code)]
fn stdout_reader_gone() -> bool {
    let mut p = libc::pollfd {
        fd: 1,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag, argument and subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "drover", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drover").chain(args.iter().copied()))
    }

    #[test]
    fn a_negative_priority_parses_and_other_negatives_get_a_clear_message() {
        let cli = parse(&["submit", "--priority", "-5", "--", "true"]).unwrap();
        let Cmd::Submit(a) = cli.command else {
            panic!("not a submit")
        };
        assert_eq!(a.priority, -5);
        for args in [
            &["submit", "--retries", "-1", "--", "true"][..],
            &["submit", "--timeout", "-5s", "--", "true"],
            &["submit", "--memory", "-2G", "--", "true"],
            &["job", "-1"],
            &["list", "--limit", "-3"],
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            let value = negative_value(&e).unwrap_or_else(|| panic!("{args:?}: {e}"));
            assert!(value.starts_with('-'), "{args:?}: {value}");
        }
        // An unknown flag is still clap's own error.
        let e = parse(&["submit", "--frobnicate", "--", "true"])
            .err()
            .unwrap();
        assert_eq!(negative_value(&e), None);
    }

    #[test]
    fn completion_scripts_cover_the_subcommands_and_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "drover", &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["submit", "completions", "priority", "print-config"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }
}
