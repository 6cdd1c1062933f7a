//! Reading the cluster's state: `status`, `list`, `logs`, `job`, `workers`, `policy`,
//! `cluster`; and `cancel`.

use crate::Global;
use crate::render;
use anyhow::{Result, bail};
use clap::Args;
use drover_client::ListQuery;
use drover_types::{
    MultifactorWeights, PlacementPolicyKind, QueuePolicyKind, format_bytes, format_duration_ms,
};
use futures_util::StreamExt;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Task id or key
    task: String,
}

pub async fn status(g: &Global, a: StatusArgs) -> Result<ExitCode> {
    let t = match g.client()?.task(&a.task).await {
        Ok(t) => t,
        // Not an error of the request: the task existed and its time is up. The
        // server's message names it and the retention ("task 123 was retired
        // (finished tasks are kept for 7d, …)").
        Err(e) if e.is_retired() && !g.json => {
            if let drover_client::ClientError::Api { message, .. } = &e {
                println!("{message}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        render::print_json(&t)?;
        return Ok(ExitCode::SUCCESS);
    }
    let title = match (&t.key, t.name.is_empty()) {
        (Some(k), true) => format!("task {} ({k})", t.id),
        (Some(k), false) => format!("task {} ({k}, {})", t.id, t.name),
        (None, false) => format!("task {} ({})", t.id, t.name),
        (None, true) => format!("task {}", t.id),
    };
    println!("{title}");
    match t.cached_from {
        Some(from) => println!(
            "  state:     {} (cached: result and output of task {from})",
            render::state(t.state)
        ),
        None => println!("  state:     {}", render::state(t.state)),
    }
    if let Some(r) = &t.reason {
        println!("  why:       {r}");
    }
    if let Some(e) = &t.effective_priority {
        println!("  effective priority {e}");
    }
    if let Some(p) = &t.placement {
        println!("  placement: {p}");
    }
    if let Some(k) = &t.cache_key {
        println!("  cache key: {k}");
    }
    println!("  job:       {}", t.job);
    if let Some(sp) = &t.spec.split {
        let slot = t.array_index.unwrap_or(0);
        match (t.range_start, t.range_end) {
            (Some(a), Some(b)) => {
                let n = b - a + 1;
                let unit = if n == 1 { "integer" } else { "integers" };
                println!(
                    "  split:     chunk {slot} of {}: {a}-{b} ({n} {unit})",
                    sp.range
                )
            }
            _ if t.state == drover_types::TaskState::Succeeded => println!(
                "  split:     slot {slot} of {}: not needed (the range was covered)",
                sp.range
            ),
            _ => println!(
                "  split:     slot {slot} of {}: no slice yet (sized as earlier chunks finish)",
                sp.range
            ),
        }
    }
    println!(
        "  command:   {}",
        render::command_line(&t.spec.command, t.spec.shell)
    );
    match &t.reserved {
        // Dynamic resources: the running attempt holds something else than asked.
        Some(r) => println!("  resources: {r} (resized; spec: {})", t.spec.resources),
        None => println!("  resources: {}", t.spec.resources),
    }
    println!("  attempt:   {}", attempt_line(&t));
    if let Some(w) = &t.worker {
        // The name, and the id (`w3`) of the worker of the latest attempt.
        match t.attempts.last() {
            Some(at) if at.worker_name == *w => println!("  worker:    {w} ({})", at.worker),
            _ => println!("  worker:    {w}"),
        }
    }
    // The devices of the latest attempt (held by no other running attempt).
    if let Some(at) = t.attempts.last()
        && !at.gpus.is_empty()
    {
        println!("  devices:   gpus {}", gpu_list(&at.gpus));
    }
    println!("  submitted: {}", render::when(Some(t.submitted_at)));
    if t.started_at.is_some() {
        println!("  started:   {}", render::when(t.started_at));
    }
    if t.ended_at.is_some() {
        println!("  ended:     {}", render::when(t.ended_at));
    }
    if let Some(d) = t.duration_ms {
        println!("  duration:  {}", format_duration_ms(d));
    }
    if let Some(o) = &t.outcome {
        println!("  outcome:   {o}");
    }
    if let Some(u) = &t.usage {
        println!(
            "  usage:     cpu {} · peak memory {} · read {} · written {}",
            format_duration_ms(u.cpu_time_ms),
            format_bytes(u.peak_memory_bytes),
            format_bytes(u.read_bytes),
            format_bytes(u.write_bytes)
        );
    }
    if !t.deps.is_empty() {
        let deps: Vec<String> = t.deps.iter().take(20).map(|d| d.to_string()).collect();
        let more = if t.deps.len() > 20 {
            format!(" (+{} more)", t.deps.len() - 20)
        } else {
            String::new()
        };
        println!("  after:     {}{more}", deps.join(", "));
    }
    if let Some(r) = &t.result
        && !r.is_empty()
    {
        for (i, line) in render::result_preview(r, &t.id.to_string())
            .iter()
            .enumerate()
        {
            let label = if i == 0 { "result:" } else { "" };
            println!("  {label:<10} {line}");
        }
    }
    if t.attempts.len() > 1 {
        println!("  attempts:");
        for at in &t.attempts {
            let how = at
                .failure
                .as_ref()
                .map(|f| f.to_string())
                .or_else(|| at.outcome.as_ref().map(|o| o.to_string()))
                .unwrap_or_else(|| "in progress".into());
            let resumed = at
                .resumed_from
                .as_ref()
                .map(|c| format!(" · resumed from {c}"))
                .unwrap_or_default();
            let gpus = if at.gpus.is_empty() {
                String::new()
            } else {
                format!(" · gpus {}", gpu_list(&at.gpus))
            };
            println!(
                "    #{} on {} ({}): {how}{gpus}{resumed}",
                at.attempt, at.worker_name, at.worker
            );
        }
    }
    if let Some(c) = &t.checkpoint {
        println!(
            "  checkpoint: {c} · {} · saved at {}",
            format_bytes(c.size),
            render::when(Some(c.saved_at))
        );
    } else if let Some(spec) = &t.spec.checkpoint {
        println!(
            "  checkpoint: none saved yet (every {})",
            format_duration_ms(spec.interval_ms)
        );
    }
    if !t.resizes.is_empty() {
        println!("  resizes:");
        for r in &t.resizes {
            println!("    {}", crate::resize::history_line(r));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2 of 3`, or, when evictions (preemptions, retractions) made attempts that did not
/// count against the retry budget, `3 (1 evicted, not counted; 2 of 2 allowed used)`:
/// "attempt 3 of 2" would look like a broken budget.
fn attempt_line(t: &drover_proto::api::TaskInfo) -> String {
    use drover_types::FailureCause;
    let evicted = t
        .attempts
        .iter()
        .filter(|a| {
            matches!(
                a.failure,
                Some(FailureCause::Preempted | FailureCause::Retracted)
            )
        })
        .count() as u32;
    if evicted == 0 {
        return format!("{} of {}", t.attempt, t.max_attempts);
    }
    let counted = t.attempt.0.saturating_sub(evicted);
    format!(
        "{} ({evicted} evicted, not counted; {counted} of {} allowed used)",
        t.attempt, t.max_attempts
    )
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these states, comma-separated (e.g. running,ready)
    #[arg(long)]
    state: Option<String>,
    /// Only this job's tasks
    #[arg(long)]
    job: Option<u64>,
    /// Only tasks with this name
    #[arg(long)]
    name: Option<String>,
    /// Only tasks with this label, KEY=VALUE
    #[arg(long)]
    label: Option<String>,
    /// Rows per page
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Continue after this cursor (printed at the end of a page)
    #[arg(long)]
    cursor: Option<String>,
    /// Every page, not just the first
    #[arg(long)]
    all: bool,
}

pub async fn list(g: &Global, a: ListArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let mut query = ListQuery {
        state: a.state,
        job: a.job,
        name: a.name,
        label: a.label,
        limit: Some(a.limit.min(1000)),
        cursor: a.cursor,
    };
    let mut table = render::table(&[
        "ID",
        "KEY/NAME",
        "STATE",
        "PRIO",
        "TRY",
        "WORKER",
        "SUBMITTED",
        "EXIT",
    ]);
    let mut all = Vec::new();
    let next = loop {
        let page = client.list(&query).await?;
        for t in &page.tasks {
            let label = t.key.clone().unwrap_or_else(|| t.name.clone());
            table.add_row(vec![
                t.id.to_string(),
                label,
                match t.cached_from {
                    Some(_) => format!("{} (cached)", render::state(t.state)),
                    None => render::state(t.state),
                },
                t.priority.to_string(),
                t.attempt.to_string(),
                t.worker.clone().unwrap_or_else(|| "-".into()),
                render::ago(Some(t.submitted_at)),
                t.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        all.extend(page.tasks);
        match page.next_cursor {
            Some(c) if a.all => query.cursor = Some(c),
            other => break other,
        }
    };
    if g.json {
        render::print_json(&all)?;
    } else {
        println!("{table}");
        if let Some(c) = next {
            println!("more: --cursor {c} (or --all)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Task id or key
    task: String,
    /// Keep printing new output until the task ends
    #[arg(short, long)]
    follow: bool,
    /// Standard error instead of standard output
    #[arg(long)]
    stderr: bool,
}

/// Writes output chunks: raw bytes, or with `--json` one JSON object per chunk
/// (`{"stream", "offset", "data"}`, see [`render::JsonLines`]).
struct LogSink {
    json: Option<render::JsonLines>,
    out: std::io::StdoutLock<'static>,
}

impl LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.json {
            None => self.out.write_all(bytes)?,
            Some(j) => {
                if let Some(line) = j.push(bytes) {
                    writeln!(self.out, "{line}")?;
                }
            }
        }
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(line) = self.json.as_mut().and_then(|j| j.finish()) {
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }
}

pub async fn logs(g: &Global, a: LogsArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let mut out = LogSink {
        json: g.json.then(|| render::JsonLines::new(a.stderr)),
        out: std::io::stdout().lock(),
    };
    if a.follow {
        // The server pushes output as it arrives (no polling). If the connection drops,
        // follow again from the byte we got to.
        let task = client.task(&a.task).await?.id.to_string();
        let mut offset = 0u64;
        let mut retries = 0;
        loop {
            let mut stream = Box::pin(client.follow_output_from(&task, a.stderr, offset).await?);
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        offset += bytes.len() as u64;
                        out.write(&bytes)?;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => break,
                Some(e) if retries < 5 => {
                    retries += 1;
                    eprintln!("output stream interrupted ({e}); resuming at byte {offset}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Some(e) => return Err(e.into()),
            }
        }
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    // One task throughout, even if a newer task takes the key between two reads.
    let task = client.task(&a.task).await?.id.to_string();
    let mut offset = 0;
    loop {
        let (bytes, next) = client.output(&task, a.stderr, offset).await?;
        if bytes.is_empty() {
            break;
        }
        out.write(&bytes)?;
        offset = next;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Task ids or keys
    tasks: Vec<String>,
    /// Cancel a whole job
    #[arg(long)]
    job: Option<u64>,
}

pub async fn cancel(g: &Global, a: CancelArgs) -> Result<ExitCode> {
    if a.tasks.is_empty() && a.job.is_none() {
        bail!("name the tasks to cancel (ids or keys), or --job N");
    }
    let client = g.client()?;
    let mut total = 0;
    if let Some(j) = a.job {
        total += client.cancel_job(j).await?.cancelled;
    }
    for t in &a.tasks {
        total += client.cancel_task(t).await?.cancelled;
    }
    if g.json {
        render::print_json(&serde_json::json!({ "cancelled": total }))?;
    } else {
        println!(
            "cancelled {total} {}",
            if total == 1 { "task" } else { "tasks" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id (`drover submit -f` prints it)
    job: u64,
}

pub async fn job(g: &Global, a: JobArgs) -> Result<ExitCode> {
    let info = g.client()?.job(a.job).await?;
    if g.json {
        render::print_json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "job {}{}: {} {}, ids {} to {}",
        info.id,
        if info.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", info.name)
        },
        info.count,
        if info.count == 1 { "task" } else { "tasks" },
        info.first,
        info.first.0 + info.count - 1
    );
    for (s, n) in &info.states {
        println!("  {:<18} {n}", render::state(*s));
    }
    for sp in &info.splits {
        print_split(sp);
    }
    Ok(ExitCode::SUCCESS)
}

/// A split of `drover job`: its range, how much of it chunks cover, their sizes.
fn print_split(sp: &drover_proto::api::SplitInfo) {
    let name = sp
        .key
        .as_deref()
        .map(|k| format!(" {k}"))
        .unwrap_or_default();
    let how = match sp.chunk_duration_ms {
        Some(ms) => format!(
            "chunks {} (target {} each, first wave {})",
            sp.chunks,
            format_duration_ms(ms),
            sp.wave
        ),
        None => format!("{} chunks", sp.chunks),
    };
    println!(
        "  split{name} (tasks {} to {}): range {}-{}, {how}",
        sp.first,
        sp.first.0 + sp.slots as u64 - 1,
        sp.range_start,
        sp.range_end
    );
    let percent = (sp.covered as u128 * 100 / sp.total.max(1) as u128) as u64;
    println!(
        "    covered {}/{} ({percent}%) · {} chunks made, {} succeeded{}",
        sp.covered,
        sp.total,
        sp.chunks_created,
        sp.chunks_succeeded,
        if sp.stopped {
            " · stopped (a chunk did not succeed)"
        } else {
            ""
        }
    );
    const SHOWN: usize = 32;
    let mut sizes: Vec<String> = sp
        .chunk_sizes
        .iter()
        .take(SHOWN)
        .map(u64::to_string)
        .collect();
    if sp.chunk_sizes.len() > SHOWN {
        sizes.push(format!("… (+{} more)", sp.chunk_sizes.len() - SHOWN));
    }
    println!("    chunk sizes: {}", sizes.join(", "));
    if sp.items_per_second > 0 {
        println!("    measured: {} items/s", sp.items_per_second);
    }
}

#[derive(Debug, Args)]
pub struct ServersArgs {
    #[command(subcommand)]
    change: Option<ServersChange>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServersChange {
    /// Add a running server that waits to join (started with `drover server --join`):
    /// it gets a node id, catches up as a learner, then becomes a voter
    Add {
        /// Its address, HOST:PORT, as it listens
        address: String,
    },
    /// Remove a server from the group (the leader too: the others elect a new one);
    /// refused for the last voter or if too few voters would be left reachable
    Remove {
        /// Its node id or its address, as `drover servers` lists them
        #[arg(value_name = "ID|ADDRESS")]
        member: String,
    },
}

pub async fn servers(g: &Global, a: &ServersArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let change = match &a.change {
        None => None,
        Some(ServersChange::Add { address }) => Some(("added", client.add_server(address).await?)),
        Some(ServersChange::Remove { member }) => {
            Some(("removed", client.remove_server(member).await?))
        }
    };
    if let Some((what, c)) = change {
        if g.json {
            render::print_json(&c)?;
        } else {
            let voters: Vec<String> = c.voters.iter().map(u64::to_string).collect();
            println!(
                "{what} server {} ({}); voters now: {}",
                c.id,
                c.address,
                voters.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let list = client.servers().await?;
    if g.json {
        render::print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = render::table(&["ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "REACHABLE"]);
    for s in &list {
        table.add_row(vec![
            s.id.to_string(),
            s.address.clone(),
            s.role.clone(),
            s.term.to_string(),
            s.last_applied
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            if s.reachable { "yes" } else { "no" }.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn workers(g: &Global) -> Result<ExitCode> {
    let list = g.client()?.workers().await?;
    if g.json {
        render::print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = render::table(&[
        "ID",
        "NAME",
        "STATE",
        "CPU (alloc/cap)",
        "MEMORY (alloc/cap)",
        "RUNNING",
        "LOAD",
        "DATA KEYS",
        "LAST SEEN",
        "IDENTITY",
        "DRIVERS",
        "ISOLATION",
    ]);
    // Workers that enforce nothing say why, under the table (the reason is long).
    let mut notes = Vec::new();
    for w in &list {
        if w.isolation.enforced.is_empty() && !w.isolation.mechanism.is_empty() {
            notes.push(format!("{} {}: {}", w.id, w.name, w.isolation.mechanism));
        }
        let state = if w.connected {
            w.state.to_string()
        } else {
            format!("{} (disconnected)", w.state)
        };
        table.add_row(vec![
            w.id.to_string(),
            w.name.clone(),
            state,
            format!(
                "{:.2}/{:.2}",
                w.allocated.cpu_milli as f64 / 1000.0,
                w.capacity.cpu_milli as f64 / 1000.0
            ),
            format!(
                "{}/{}",
                format_bytes(w.allocated.memory_bytes),
                format_bytes(w.capacity.memory_bytes)
            ),
            w.running.len().to_string(),
            // What load-aware placement goes by, and the tasks' measured CPU in it.
            format!(
                "{}.{}% (cpu {:.2})",
                w.load_permille / 10,
                w.load_permille % 10,
                w.load.cpu_milli as f64 / 1000.0
            ),
            w.data_keys.len().to_string(),
            w.last_seen_ms_ago
                .map(|ms| format!("{} ago", format_duration_ms(ms)))
                .unwrap_or_else(|| "-".into()),
            // Its own credential, or none: it connects with the cluster token.
            match &w.credential {
                Some(id) => format!("credential {id}"),
                None => "cluster token".into(),
            },
            w.drivers.join(","),
            isolation_cell(&w.isolation),
        ]);
    }
    println!("{table}");
    for n in notes {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `2,3`.
fn gpu_list(ids: &[u32]) -> String {
    ids.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `memory,cpu,pids gpus 0,1`: the limits the worker's kernel enforces on every task
/// (`none`, or `unknown` for a worker that did not say) and the GPU indices it hands out.
fn isolation_cell(i: &drover_types::Isolation) -> String {
    let mut cell = i.summary();
    if !i.gpu_ids.is_empty() {
        cell.push_str(&format!(" gpus {}", gpu_list(&i.gpu_ids)));
    }
    cell
}

#[derive(Debug, Args)]
pub struct WorkerRefArgs {
    /// The worker: its id as `w3` or `3`, or its name
    worker: String,
}

/// `drover drain` (`drain` true) and `drover resume`.
pub async fn drain(g: &Global, a: WorkerRefArgs, drain: bool) -> Result<ExitCode> {
    let client = g.client()?;
    if drain {
        client.drain_worker(&a.worker).await?;
    } else {
        client.resume_worker(&a.worker).await?;
    }
    let list = client.workers().await?;
    let w = drover_types::WorkerRef::parse(&a.worker)
        .resolve(list.iter().map(|w| (w.id, w.name.as_str())))
        .and_then(|id| list.iter().find(|w| w.id == id));
    match (g.json, w) {
        (true, Some(w)) => render::print_json(w)?,
        (true, None) => render::print_json(&serde_json::json!({}))?,
        (false, Some(w)) => println!("worker {} ({}): {}", w.id, w.name, w.state),
        (false, None) => println!("worker {}: done", a.worker),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Queue policy: fcfs, priority, sjf, fair, multifactor
    queue: Option<String>,
    /// Multifactor weights (sets the queue policy to multifactor): FACTOR=WEIGHT,...
    /// with factors priority (per level), age (per second ready), fairshare (taken off
    /// per CPU core the owner holds), size (per CPU core asked; negative favors small
    /// tasks) and label:NAME (per unit of a numeric label). E.g.
    /// age=1,priority=1000,label:business_value=10
    #[arg(long, value_name = "WEIGHTS")]
    priority_weights: Option<String>,
    /// Placement: binpack, spread, round-robin, load-aware
    #[arg(long)]
    placement: Option<String>,
    /// Allow preemption of lower-priority tasks: on or off
    #[arg(long)]
    preemption: Option<String>,
    /// Tasks a full worker may hold queued to start the moment a slot frees (0: off).
    /// Faster for many short tasks; a queued task cannot be overtaken by a later one
    #[arg(long)]
    prefetch: Option<u32>,
}

pub async fn policy(g: &Global, a: PolicyArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let mut policy = client.policy().await?;
    let changing = a.queue.is_some()
        || a.priority_weights.is_some()
        || a.placement.is_some()
        || a.preemption.is_some()
        || a.prefetch.is_some();
    if let Some(n) = a.prefetch {
        policy.prefetch_per_worker = n;
    }
    if let Some(q) = &a.queue {
        policy.queue = QueuePolicyKind::from_name(q).ok_or_else(|| {
            anyhow::anyhow!(
                "{q:?} is not a queue policy: use fcfs, priority, sjf, fair or multifactor"
            )
        })?;
    }
    if let Some(w) = &a.priority_weights {
        if !matches!(policy.queue, QueuePolicyKind::Multifactor { .. }) && a.queue.is_some() {
            bail!(
                "--priority-weights sets the multifactor queue policy, not {:?}",
                a.queue.as_deref().unwrap_or("")
            );
        }
        let factors =
            MultifactorWeights::parse(w).map_err(|e| anyhow::anyhow!("--priority-weights: {e}"))?;
        policy.queue = QueuePolicyKind::Multifactor { factors };
    }
    if let Some(p) = &a.placement {
        policy.placement = PlacementPolicyKind::from_name(p).ok_or_else(|| {
            anyhow::anyhow!(
                "{p:?} is not a placement policy: use binpack, spread, round-robin or load-aware"
            )
        })?;
    }
    if let Some(p) = &a.preemption {
        policy.preemption = match p.as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            other => bail!("--preemption {other:?}: use on or off"),
        };
    }
    if changing {
        policy = client.set_policy(&policy).await?;
    }
    if g.json {
        render::print_json(&policy)?;
    } else {
        match &policy.queue {
            QueuePolicyKind::Multifactor { factors } => {
                println!("queue:      multifactor ({})", factors.to_text())
            }
            q => println!("queue:      {}", q.name()),
        }
        println!("placement:  {}", policy.placement.name());
        println!(
            "preemption: {}",
            if policy.preemption { "on" } else { "off" }
        );
        println!("prefetch:   {} per worker", policy.prefetch_per_worker);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cluster(g: &Global) -> Result<ExitCode> {
    let c = g.client()?.cluster().await?;
    if g.json {
        render::print_json(&c)?;
        return Ok(ExitCode::SUCCESS);
    }
    let leader = c
        .leader
        .map_or_else(|| "none (no quorum)".to_string(), |l| l.to_string());
    println!(
        "drover {} · node {} · leader {leader} · term {}",
        c.version, c.node_id, c.term
    );
    println!(
        "workers: {} active, {} draining, {} lost",
        c.workers_active, c.workers_draining, c.workers_lost
    );
    println!(
        "policy: queue {}, placement {}",
        c.policy.queue.name(),
        c.policy.placement.name()
    );
    for (s, n) in &c.tasks {
        if *n > 0 {
            println!("  {:<18} {n}", render::state(*s));
        }
    }
    Ok(ExitCode::SUCCESS)
}
