//! `drover top`: a live terminal view of the cluster: who leads, tasks by state,
//! completions per second over the last minute, and every worker's capacity,
//! reservation and live usage.
//!
//! It redraws when the event stream says something changed (at most four times a
//! second) and every `--interval` for the usage samples, which are not events. `--once`
//! renders one frame as plain text at a given size and exits: for scripts, and the same
//! drawing code the live view uses.

use crate::Global;
use anyhow::{Context, Result};
use clap::Args;
use drover_client::{Client, EventFilter, StreamItem};
use drover_proto::api::{ClusterSummary, WorkerInfo};
use drover_types::{TaskState, WorkerState, format_bytes};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one frame as text and exit
    #[arg(long)]
    once: bool,
    /// With --once: the frame's width in columns
    #[arg(long, default_value = "120", requires = "once")]
    width: u16,
    /// With --once: the frame's height in rows
    #[arg(long, default_value = "36", requires = "once")]
    height: u16,
    /// How often to refresh the usage figures (changes of state redraw at once)
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_duration)]
    interval: Duration,
}

/// What one frame shows.
struct View {
    cluster: ClusterSummary,
    workers: Vec<WorkerInfo>,
    /// Tasks in a final state, sampled at each refresh, for the rate over the last minute.
    finals: VecDeque<(Instant, u64)>,
    /// Completions per second, one value per refresh, newest last.
    rates: VecDeque<u64>,
    selected: usize,
}

impl View {
    async fn fetch(client: &Client) -> Result<(ClusterSummary, Vec<WorkerInfo>)> {
        let (cluster, workers) = tokio::try_join!(client.cluster(), client.workers())?;
        Ok((cluster, workers))
    }

    fn new(cluster: ClusterSummary, workers: Vec<WorkerInfo>) -> View {
        let mut v = View {
            cluster,
            workers,
            finals: VecDeque::new(),
            rates: VecDeque::new(),
            selected: 0,
        };
        v.sample();
        v
    }

    fn update(&mut self, cluster: ClusterSummary, workers: Vec<WorkerInfo>) {
        self.cluster = cluster;
        self.workers = workers;
        self.sample();
    }

    fn sample(&mut self) {
        let finals: u64 = self
            .cluster
            .tasks
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum();
        let now = Instant::now();
        if let Some((t, n)) = self.finals.back() {
            let secs = now.duration_since(*t).as_secs_f64();
            if secs >= 0.5 {
                self.rates
                    .push_back((finals.saturating_sub(*n) as f64 / secs).round() as u64);
                self.finals.push_back((now, finals));
            }
        } else {
            self.finals.push_back((now, finals));
        }
        while self
            .finals
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.finals.pop_front();
        }
        while self.rates.len() > 120 {
            self.rates.pop_front();
        }
    }

    /// Completions per second over the samples of the last minute.
    fn rate(&self) -> f64 {
        match (self.finals.front(), self.finals.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                n1.saturating_sub(*n0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn draw(&self, f: &mut ratatui::Frame) {
        let [head, states, spark, table, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(3),
            Constraint::Length(4),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let c = &self.cluster;
        let leader = match c.leader {
            Some(l) if l == c.node_id => format!("server {l} leads (this one)"),
            Some(l) => format!("server {l} leads"),
            None => "no leader".to_string(),
        };
        let active = c.workers_active;
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("drover top", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    "  {leader}, term {}  ·  workers: {active} active, {} draining, {} lost  ·  {:.1} tasks/s done over the last minute",
                    c.term,
                    c.workers_draining,
                    c.workers_lost,
                    self.rate()
                )),
            ])),
            head,
        );
        let spans: Vec<Span> = TaskState::ALL
            .iter()
            .flat_map(|s| {
                let n = c.tasks.get(s).copied().unwrap_or(0);
                let style = Style::new().fg(state_color(*s));
                [Span::styled(format!("{s} {n}"), style), Span::raw("   ")]
            })
            .collect();
        f.render_widget(
            Paragraph::new(Line::from(spans))
                .block(Block::new().borders(Borders::ALL).title(" tasks by state ")),
            states,
        );
        let rates: Vec<u64> = self.rates.iter().copied().collect();
        f.render_widget(
            Sparkline::default()
                .block(
                    Block::new()
                        .borders(Borders::ALL)
                        .title(" completions per second "),
                )
                .data(&rates)
                .style(Style::new().fg(Color::Green)),
            spark,
        );
        let rows = self.workers.iter().enumerate().map(|(i, w)| {
            let cap = &w.capacity;
            let row = Row::new(vec![
                Cell::from(format!("w{}", w.id.0)),
                Cell::from(w.name.clone()),
                Cell::from(worker_state(w)).style(Style::new().fg(match w.state {
                    WorkerState::Active if w.connected => Color::Green,
                    WorkerState::Active | WorkerState::Draining => Color::Yellow,
                    WorkerState::Lost => Color::Red,
                })),
                Cell::from(format!(
                    "{} / {} / {}",
                    cores(w.usage.cpu_milli),
                    cores(w.allocated.cpu_milli),
                    cores(cap.cpu_milli)
                )),
                Cell::from(format!(
                    "{} / {} / {}",
                    format_bytes(w.usage.memory_bytes),
                    format_bytes(w.allocated.memory_bytes),
                    format_bytes(cap.memory_bytes)
                )),
                Cell::from(w.running.len().to_string()),
            ]);
            if i == self.selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        });
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(6),
                    Constraint::Min(16),
                    Constraint::Length(10),
                    Constraint::Length(22),
                    Constraint::Length(34),
                    Constraint::Length(8),
                ],
            )
            .header(
                Row::new(vec![
                    "id",
                    "worker",
                    "state",
                    "cpu used/alloc/cap",
                    "memory used/alloc/cap",
                    "running",
                ])
                .style(Style::new().add_modifier(Modifier::BOLD)),
            )
            .block(Block::new().borders(Borders::ALL).title(" workers ")),
            table,
        );
        f.render_widget(
            Paragraph::new("q quit  ·  ↑↓ select a worker  ·  d drain it  ·  r resume it"),
            foot,
        );
    }
}

fn cores(milli: u32) -> String {
    format!("{:.1}", milli as f64 / 1000.0)
}

fn worker_state(w: &WorkerInfo) -> String {
    match w.state {
        WorkerState::Active if !w.connected => "away".to_string(),
        s => format!("{s:?}").to_lowercase(),
    }
}

fn state_color(s: TaskState) -> Color {
    match s {
        TaskState::Running => Color::Green,
        TaskState::Succeeded => Color::Cyan,
        TaskState::Failed | TaskState::TimedOut | TaskState::DependencyFailed => Color::Red,
        TaskState::Cancelled => Color::DarkGray,
        TaskState::Ready | TaskState::Assigned => Color::Yellow,
        TaskState::Waiting | TaskState::Backoff => Color::Blue,
    }
}

pub async fn top(g: &Global, a: TopArgs) -> Result<ExitCode> {
    let client = g.client()?;
    let (cluster, workers) = View::fetch(&client).await?;
    let mut view = View::new(cluster, workers);
    if a.once {
        let mut term = Terminal::new(TestBackend::new(a.width, a.height))?;
        term.draw(|f| view.draw(f))?;
        let buf = term.backend().buffer();
        let width = buf.area.width as usize;
        let symbols: Vec<&str> = buf.content.iter().map(|c| c.symbol()).collect();
        for line in symbols.chunks(width) {
            println!("{}", line.concat().trim_end());
        }
        return Ok(ExitCode::SUCCESS);
    }
    live(client, &mut view, a.interval).await
}

/// What wakes the live loop.
enum Wake {
    Key(KeyCode, KeyModifiers),
    Changed,
}

async fn live(client: Client, view: &mut View, interval: Duration) -> Result<ExitCode> {
    let (tx, mut rx) = mpsc::channel::<Wake>(64);
    // Keys are read by a thread of their own (crossterm's reads block).
    let keys = tx.clone();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    if let Ok(Event::Key(k)) = event::read()
                        && k.kind == KeyEventKind::Press
                        && keys.blocking_send(Wake::Key(k.code, k.modifiers)).is_err()
                    {
                        return;
                    }
                }
                Ok(false) => {
                    if keys.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    // Any event means something changed; the stream reconnects by itself (resume).
    let events_client = client.clone();
    tokio::spawn(async move {
        let Ok(mut stream) = events_client.events(&EventFilter::default(), None).await else {
            return;
        };
        loop {
            match stream.next().await {
                Ok(StreamItem::Event(_)) | Ok(StreamItem::Reset(_)) => {
                    // A full queue already holds a wake-up: this one adds nothing.
                    if tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(Wake::Changed);
                }
                Ok(StreamItem::Open { .. }) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if tx.is_closed() || stream.resume().await.is_err() && tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });

    let mut terminal = ratatui::init();
    let result = async {
        let mut tick = tokio::time::interval(interval);
        let mut dirty = true;
        let mut last_draw = Instant::now() - Duration::from_secs(1);
        loop {
            if dirty && last_draw.elapsed() >= Duration::from_millis(250) {
                terminal.draw(|f| view.draw(f))?;
                last_draw = Instant::now();
                dirty = false;
            }
            let refresh = tokio::select! {
                _ = tick.tick() => true,
                wake = rx.recv() => match wake {
                    Some(Wake::Changed) => true,
                    Some(Wake::Key(code, mods)) => match code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(ExitCode::SUCCESS),
                        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        KeyCode::Down => {
                            view.selected = (view.selected + 1).min(view.workers.len().saturating_sub(1));
                            dirty = true;
                            false
                        }
                        KeyCode::Up => {
                            view.selected = view.selected.saturating_sub(1);
                            dirty = true;
                            false
                        }
                        KeyCode::Char(k @ ('d' | 'r')) => {
                            if let Some(w) = view.workers.get(view.selected) {
                                let name = format!("w{}", w.id.0);
                                let _ = if k == 'd' {
                                    client.drain_worker(&name).await
                                } else {
                                    client.resume_worker(&name).await
                                };
                            }
                            true
                        }
                        _ => false,
                    },
                    None => true,
                },
                // Redraw what is already known once the throttle allows.
                _ = tokio::time::sleep(Duration::from_millis(250)), if dirty => false,
            };
            if refresh {
                let (cluster, workers) = View::fetch(&client)
                    .await
                    .context("reading the cluster's state")?;
                view.update(cluster, workers);
                dirty = true;
            }
        }
    }
    .await;
    ratatui::restore();
    result
}
