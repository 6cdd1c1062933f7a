//! The `drover` command.

mod daemons;
mod inspect;
mod jobfile;
mod render;
mod submit;

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};
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
    /// The server's URL [default: the local server's, from the data directory]
    #[arg(long, global = true, env = "DROVER_SERVER")]
    server: Option<String>,
    /// The cluster token [default: the local server's token file]
    #[arg(long, global = true, env = "DROVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where Drover keeps its files on this machine
    #[arg(long, global = true, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of tables, for scripts
    #[arg(long, global = true)]
    json: bool,
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
        Ok(Client::new(server, token))
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a server and local workers in one process: the quickest way to a cluster
    Up(daemons::UpArgs),
    /// Run a server
    Server(daemons::ServerArgs),
    /// Run a worker agent that takes tasks from a server
    Worker(daemons::WorkerArgs),
    /// Submit a task (`-- COMMAND ARGS...`) or a job file (`-f job.yaml`)
    Submit(submit::SubmitArgs),
    /// Submit, wait, print the output, and exit with the task's exit code
    Run(submit::SubmitArgs),
    /// Wait for tasks or jobs to finish, with a progress bar
    Wait(submit::WaitArgs),
    /// Show one task: state, why it is pending, attempts, usage, result
    Status(inspect::StatusArgs),
    /// List tasks
    List(inspect::ListArgs),
    /// Print a task's output
    Logs(inspect::LogsArgs),
    /// Cancel tasks or a job
    Cancel(inspect::CancelArgs),
    /// Show a job's progress
    Job(inspect::JobArgs),
    /// List workers
    Workers,
    /// Show or switch the scheduling policy
    Policy(inspect::PolicyArgs),
    /// Cluster summary
    Cluster,
    /// (internal) Kills a worker's leftover task processes once that worker exits
    #[command(hide = true)]
    WorkerReaper(daemons::ReaperArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Cmd::Up(_) | Cmd::Server(_) | Cmd::Worker(_) | Cmd::WorkerReaper(_)
    );
    if !daemon {
        // `drover list | head` closes our stdout early: end quietly like other Unix
        // tools rather than panicking on the next print. (Not for daemons: a worker
        // writing to the stdin of a task that already exited must not die of it.)
        reset_sigpipe();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if daemon { "info,openraft=warn" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
        Cmd::Worker(a) => daemons::worker(g, a).await,
        Cmd::Submit(a) => submit::submit(g, a, false).await,
        Cmd::Run(a) => submit::submit(g, a, true).await,
        Cmd::Wait(a) => submit::wait(g, a).await,
        Cmd::Status(a) => inspect::status(g, a).await,
        Cmd::List(a) => inspect::list(g, a).await,
        Cmd::Logs(a) => inspect::logs(g, a).await,
        Cmd::Cancel(a) => inspect::cancel(g, a).await,
        Cmd::Job(a) => inspect::job(g, a).await,
        Cmd::Workers => inspect::workers(g).await,
        Cmd::Policy(a) => inspect::policy(g, a).await,
        Cmd::Cluster => inspect::cluster(g).await,
        Cmd::WorkerReaper(a) => daemons::reaper(a),
    }
}

#[allow(unsafe_code)]
fn reset_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any
    // thread exists; Rust sets it to "ignore" for every program.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
