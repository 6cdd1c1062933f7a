//! `submit`, `run` and `wait`.

use crate::Global;
use crate::events::Waker;
use crate::jobfile::{self, parse_duration_ms, parse_pairs, parse_selector};
use crate::render;
use anyhow::{Context, Result, bail};
use clap::Args;
use drover_client::{Client, EventFilter, ListQuery};
use drover_proto::api::{JobInfo, SubmitResponse};
use drover_types::{
    ArraySpec, DepRef, JobSpec, RetryPolicy, TaskId, TaskSpec, TaskState, parse_bytes, parse_cpus,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A job file (YAML) describing many tasks; see examples/ and the README
    #[arg(short = 'f', long = "file", conflicts_with = "command")]
    file: Option<PathBuf>,
    /// Your own id for the task (unique in its job), usable wherever an id is
    #[arg(long)]
    key: Option<String>,
    /// A name for people (need not be unique); `list --name` filters on it
    #[arg(long)]
    name: Option<String>,
    /// CPUs, e.g. 2, 0.5, 250m
    #[arg(long, default_value = "1")]
    cpus: String,
    /// Memory to reserve and enforce, e.g. 512M, 2G
    #[arg(long)]
    memory: Option<String>,
    /// Scratch disk to reserve, e.g. 10G
    #[arg(long)]
    disk: Option<String>,
    /// GPUs to reserve
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Higher runs first; may be negative
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,
    /// Run only after this task succeeded (repeatable; an id, a key, JOB/KEY)
    #[arg(long = "after", value_name = "ID")]
    after: Vec<String>,
    /// Time limit, e.g. 30s, 10m, 2h
    #[arg(long)]
    timeout: Option<String>,
    /// Retries after a failure (0: run at most once)
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Save what the task writes into $DROVER_CHECKPOINT_DIR this often (e.g. 30s) and
    /// when it is stopped; a new attempt starts from the latest save
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<String>,
    /// May be evicted by a higher-priority task (with preemption on) even with
    /// --retries 0; an eviction spends no retry
    #[arg(long)]
    preemptible: bool,
    /// Run as an array, e.g. 1-100: each task sees DROVER_TASK_INDEX and DROVER_TASK_COUNT
    #[arg(long)]
    array: Option<String>,
    /// Split a range, e.g. 1-1000000, into chunks the server sizes: each chunk sees
    /// DROVER_RANGE_START and DROVER_RANGE_END (inclusive)
    #[arg(long, value_name = "RANGE", conflicts_with = "array")]
    split: Option<String>,
    /// With --split: `auto` (the default: probe chunks, then chunks sized from their
    /// runtimes) or a fixed number of equal chunks
    #[arg(long, value_name = "auto|N", requires = "split")]
    chunks: Option<String>,
    /// With --split and automatic chunks: the duration each chunk should take (default 30s)
    #[arg(long, value_name = "DURATION", requires = "split")]
    chunk_duration: Option<String>,
    /// KEY=VALUE (repeatable)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// KEY=VALUE (repeatable)
    #[arg(long = "env")]
    env: Vec<String>,
    /// A secret environment variable, NAME=VALUE (repeatable): the task gets it, but
    /// every read of the task (API, `drover status`, the web UI) shows `(secret)`
    #[arg(long = "secret-env", value_name = "NAME=VALUE")]
    secret_env: Vec<String>,
    /// Only on workers matching, e.g. zone=a (repeatable)
    #[arg(long = "constraint")]
    constraints: Vec<String>,
    /// A data key the task reads (repeatable): workers holding it (a file of that name
    /// in their data directory, or a --data-key) are preferred
    #[arg(long = "input", value_name = "KEY")]
    inputs: Vec<String>,
    /// Run COMMAND through /bin/sh -c (several words are joined with spaces, as ssh does)
    #[arg(long)]
    shell: bool,
    /// The execution driver: process (the default), docker, or a plugin's name; only
    /// workers that have it run the task
    #[arg(long, value_name = "NAME")]
    driver: Option<String>,
    /// The image of a docker task (implies --driver docker); it must already be on the
    /// workers, which do not pull
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Use the result cache: if an identical task (same command, environment, inputs,
    /// GPUs, dependency results, owner and salt) succeeded before, complete at once
    /// with its result and output instead of running
    #[arg(long)]
    cache: bool,
    /// Cache under your own key instead of a digest of the task (implies --cache)
    #[arg(long, value_name = "KEY")]
    cache_key: Option<String>,
    /// Mixed into the cache key: change it to stop reusing older results (implies --cache)
    #[arg(long, value_name = "SALT")]
    cache_salt: Option<String>,
    /// How long this run's result stays cached, e.g. 10m, 2h (default 1d; implies --cache)
    #[arg(long, value_name = "DURATION")]
    cache_ttl: Option<String>,
    /// Wait until it finishes
    #[arg(long)]
    wait: bool,
    /// The command and its arguments, after `--`
    #[arg(last = true)]
    command: Vec<String>,
}

fn task_from_args(a: &SubmitArgs) -> Result<TaskSpec> {
    if a.command.is_empty() {
        bail!(
            "give the command after `--` (e.g. `drover submit -- echo hello`), or a job file with -f"
        );
    }
    let mut spec = TaskSpec::command(a.command.clone());
    if a.shell {
        spec.command = vec![a.command.join(" ")];
        spec.shell = true;
    }
    spec.key = a.key.clone();
    spec.name = a.name.clone().unwrap_or_default();
    spec.resources.cpu_milli = parse_cpus(&a.cpus).context("--cpus")?;
    if let Some(m) = &a.memory {
        spec.resources.memory_bytes = parse_bytes(m).context("--memory")?;
    }
    if let Some(d) = &a.disk {
        spec.resources.disk_bytes = parse_bytes(d).context("--disk")?;
    }
    spec.resources.gpus = a.gpus;
    spec.priority = a.priority;
    spec.after = a.after.iter().map(|d| DepRef::parse(d)).collect();
    spec.max_runtime_ms = a
        .timeout
        .as_deref()
        .map(parse_duration_ms)
        .transpose()
        .context("--timeout")?;
    spec.retry = RetryPolicy {
        max_attempts: a.retries.saturating_add(1),
        ..RetryPolicy::default()
    };
    spec.checkpoint = a
        .checkpoint_interval
        .as_deref()
        .map(parse_duration_ms)
        .transpose()
        .context("--checkpoint-interval")?
        .map(|interval_ms| drover_types::CheckpointSpec { interval_ms });
    spec.preemptible = a.preemptible;
    if let Some(r) = &a.array {
        spec.array = Some(
            ArraySpec::parse(r)
                .ok_or_else(|| anyhow::anyhow!("--array {r:?} is not a range like 1-100"))?,
        );
    }
    if let Some(r) = &a.split {
        let range = drover_types::SplitRange::parse(r)
            .ok_or_else(|| anyhow::anyhow!("--split {r:?} is not a range like 1-1000000"))?;
        let chunks = match a.chunks.as_deref().map(str::trim) {
            None | Some("auto") => drover_types::SplitChunks::Auto,
            Some(n) => drover_types::SplitChunks::Count(n.parse().map_err(|_| {
                anyhow::anyhow!("--chunks {n:?} is neither auto nor a number of chunks")
            })?),
        };
        spec.split = Some(drover_types::SplitSpec {
            range,
            chunks,
            chunk_duration_ms: a
                .chunk_duration
                .as_deref()
                .map(parse_duration_ms)
                .transpose()
                .context("--chunk-duration")?,
        });
    }
    spec.labels = parse_pairs(&a.labels, "--label")?;
    spec.env = parse_pairs(&a.env, "--env")?;
    spec.secret_env = a
        .secret_env
        .iter()
        .map(|p| {
            // Not `parse_pairs`: its error quotes the item, which may be the secret.
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), drover_types::SecretString::new(v)))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--secret-env: an item is not NAME=VALUE (not shown: it may be the secret)"
                    )
                })
        })
        .collect::<Result<_>>()?;
    spec.constraints = a
        .constraints
        .iter()
        .map(|c| parse_selector(c))
        .collect::<Result<_>>()?;
    spec.inputs = a.inputs.clone();
    spec.driver = a.driver.clone();
    spec.image = a.image.clone();
    if spec.image.is_some() && spec.driver.is_none() {
        spec.driver = Some(drover_types::DOCKER_DRIVER.to_string());
    }
    if a.cache || a.cache_key.is_some() || a.cache_salt.is_some() || a.cache_ttl.is_some() {
        spec.cache = Some(drover_types::CacheSpec {
            key: a.cache_key.clone(),
            salt: a.cache_salt.clone().unwrap_or_default(),
            ttl_ms: a
                .cache_ttl
                .as_deref()
                .map(parse_duration_ms)
                .transpose()
                .context("--cache-ttl")?,
        });
    }
    Ok(spec)
}

/// The ids of the job's tasks that no other task of the job depends on: the job's
/// final outputs. Ids are consecutive in spec order, arrays expanded.
fn sink_ids(job: &JobSpec, first: TaskId) -> Vec<TaskId> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    let mut next = first.0;
    for (i, t) in job.tasks.iter().enumerate() {
        let n = t.expanded_len();
        ranges.push((next, n));
        next += n;
        if let Some(k) = &t.key {
            by_key.insert(k, i);
        }
    }
    let mut depended: BTreeSet<usize> = BTreeSet::new();
    for t in &job.tasks {
        for d in &t.after {
            match d {
                DepRef::Key(k) => {
                    if let Some(i) = by_key.get(k.as_str()) {
                        depended.insert(*i);
                    }
                }
                DepRef::Id(id) => {
                    if let Some(i) = ranges.iter().position(|(s, n)| id.0 >= *s && id.0 < s + n) {
                        depended.insert(i);
                    }
                }
            }
        }
    }
    (0..job.tasks.len())
        .filter(|i| !depended.contains(i))
        .flat_map(|i| (ranges[i].0..ranges[i].0 + ranges[i].1).map(TaskId))
        .collect()
}

pub async fn submit(g: &Global, a: SubmitArgs, run: bool) -> Result<ExitCode> {
    let client = g.client()?;
    let (job, single) = match &a.file {
        Some(path) => (jobfile::load(path)?, false),
        None => {
            let spec = task_from_args(&a)?;
            (
                JobSpec {
                    name: spec.name.clone(),
                    owner: String::new(),
                    tasks: vec![spec],
                },
                true,
            )
        }
    };
    let resp = if single {
        client.submit_task(&job.tasks[0]).await?
    } else {
        client.submit_job(&job).await?
    };
    if !run && !a.wait {
        if g.json {
            render::print_json(&resp)?;
        } else if resp.count == 1 {
            println!("{}", resp.first);
        } else {
            println!(
                "job {}: tasks {} to {} ({} tasks)",
                resp.job,
                resp.first,
                resp.first.0 + resp.count - 1,
                resp.count
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !g.json && !run {
        eprintln!(
            "submitted job {} ({} {} from {})",
            resp.job,
            resp.count,
            if resp.count == 1 { "task" } else { "tasks" },
            resp.first
        );
    }
    let info = wait_job(&client, &resp, !g.json).await?;
    if run {
        let sinks = sink_ids(&job, resp.first);
        return print_results(&client, g, &info, &sinks).await;
    }
    if g.json {
        render::print_json(&info)?;
    } else {
        print_job_outcome(&info);
    }
    Ok(job_exit_code(&client, &info).await)
}

fn print_job_outcome(info: &JobInfo) {
    let parts: Vec<String> = info
        .states
        .iter()
        .map(|(s, n)| format!("{n} {}", render::state(*s)))
        .collect();
    eprintln!("job {}: {}", info.id, parts.join(", "));
}

/// 0 when every task succeeded; else the exit code of the first task that failed with
/// one, or 1.
async fn job_exit_code(client: &Client, info: &JobInfo) -> ExitCode {
    if info.succeeded {
        return ExitCode::SUCCESS;
    }
    let failed = client
        .list(&ListQuery {
            job: Some(info.id.0),
            state: Some("failed,timed_out,cancelled,dependency_failed".into()),
            limit: Some(1),
            ..ListQuery::default()
        })
        .await;
    let code = failed
        .ok()
        .and_then(|l| l.tasks.first().and_then(|t| t.exit_code))
        .filter(|c| (1..=255).contains(c))
        .unwrap_or(1);
    ExitCode::from(code as u8)
}

async fn print_results(
    client: &Client,
    g: &Global,
    info: &JobInfo,
    sinks: &[TaskId],
) -> Result<ExitCode> {
    let mut results = Vec::new();
    for id in sinks {
        let task = client.task(&id.to_string()).await?;
        if g.json {
            results.push(task);
            continue;
        }
        // The whole stdout of the final task(s), in order.
        let mut offset = 0;
        let mut out = std::io::stdout().lock();
        loop {
            let (bytes, next) = client.output(&id.to_string(), false, offset).await?;
            if bytes.is_empty() {
                break;
            }
            out.write_all(&bytes)?;
            offset = next;
        }
        out.flush()?;
        if task.state != TaskState::Succeeded {
            let why = task.reason.unwrap_or_else(|| render::state(task.state));
            eprintln!("task {}: {why}", task.id);
        }
    }
    if g.json {
        render::print_json(&results)?;
    }
    if !info.succeeded && !g.json {
        print_job_outcome(info);
    }
    Ok(job_exit_code(client, info).await)
}

fn bar(total: u64, show: bool) -> ProgressBar {
    if !show || total <= 1 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} done {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// Waits until every task of the job is final, with a progress bar for many tasks.
async fn wait_job(client: &Client, resp: &SubmitResponse, show: bool) -> Result<JobInfo> {
    let pb = bar(resp.count, show);
    // Woken by the job's progress events (one per log entry that advances it).
    let mut waker = Waker::open(
        client,
        EventFilter {
            jobs: vec![resp.job.0],
            types: vec!["job".into()],
            ..EventFilter::default()
        },
    )
    .await?;
    loop {
        let info = client.job(resp.job.0).await?;
        let done: u64 = info
            .states
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum();
        pb.set_position(done);
        let running = info.states.get(&TaskState::Running).copied().unwrap_or(0);
        pb.set_message(format!("({running} running)"));
        if info.finished {
            pb.finish_and_clear();
            return Ok(info);
        }
        waker.wait().await?;
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Exit status:\n  \
    0  every task (and job) named succeeded\n  \
    1  one or more ended otherwise (failed, timed out, cancelled, dependency failed), \
    or the wait itself failed (unknown task, server unreachable: the message says which)\n  \
    2  invalid arguments")]
pub struct WaitArgs {
    /// Task ids or keys
    tasks: Vec<String>,
    /// Wait for whole jobs instead (repeatable)
    #[arg(long = "job")]
    jobs: Vec<u64>,
}

pub async fn wait(g: &Global, a: WaitArgs) -> Result<ExitCode> {
    if a.tasks.is_empty() && a.jobs.is_empty() {
        bail!("name the tasks (ids or keys) or --job N to wait for");
    }
    let client = g.client()?;
    // Each reference is resolved once, to (what the user typed, the task's id): a bare
    // key names the newest task with it, which a later submission would change.
    let mut pending: Vec<(String, String)> = Vec::with_capacity(a.tasks.len());
    for t in &a.tasks {
        pending.push((t.clone(), client.task(t).await?.id.to_string()));
    }
    let mut jobs: Vec<u64> = a.jobs.clone();
    let mut total: u64 = pending.len() as u64;
    for j in &jobs {
        total += client.job(*j).await?.count;
    }
    let pb = bar(total, !g.json);
    let mut filter = EventFilter::default();
    if jobs.is_empty() {
        filter.tasks = pending.iter().map(|(_, id)| id.clone()).collect();
        filter.types = vec!["task".into()];
    } else if pending.is_empty() {
        filter.jobs = jobs.clone();
        filter.types = vec!["job".into()];
    } else {
        filter.types = vec!["task".into(), "job".into()];
    }
    let mut waker = Waker::open(&client, filter).await?;
    let mut failed = false;
    let mut finals: BTreeMap<String, TaskState> = BTreeMap::new();
    loop {
        let mut still = Vec::new();
        for (t, id) in pending {
            let info = client.task(&id).await?;
            if info.state.is_final() {
                failed |= info.state != TaskState::Succeeded;
                finals.insert(t, info.state);
            } else {
                still.push((t, id));
            }
        }
        pending = still;
        let mut job_done = 0;
        let mut open_jobs = Vec::new();
        for j in jobs {
            let info = client.job(j).await?;
            job_done += info
                .states
                .iter()
                .filter(|(s, _)| s.is_final())
                .map(|(_, n)| n)
                .sum::<u64>();
            if info.finished {
                failed |= !info.succeeded;
                finals.insert(
                    format!("job {j}"),
                    if info.succeeded {
                        TaskState::Succeeded
                    } else {
                        TaskState::Failed
                    },
                );
            } else {
                open_jobs.push(j);
            }
        }
        jobs = open_jobs;
        pb.set_position(
            finals
                .iter()
                .filter(|(k, _)| !k.starts_with("job "))
                .count() as u64
                + job_done,
        );
        if pending.is_empty() && jobs.is_empty() {
            break;
        }
        waker.wait().await?;
    }
    pb.finish_and_clear();
    if g.json {
        render::print_json(&finals)?;
    } else {
        for (t, s) in &finals {
            println!("{t}: {}", render::state(*s));
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
