#!/usr/bin/env python3
"""Turns one run of `scripts/bench-report.sh` into `report.md` and PNG plots.

Input: the run directory the shell script filled: `*.log` files holding the benches'
`bench=` lines, the scale harness's per-second series (`drain-<workers>.csv`) and
latency distributions (`drain-<workers>.dist.csv`), and optionally `perf-*.txt`
profile summaries. Output: `report.md` and `*.png` in the target directory.

Every figure is printed beside its baseline from the same run (xargs, the ideal
makespan, or an older build), never beside a number from another day.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCH_LINE = re.compile(r"^bench=(\S+)\s*(.*)$")


@dataclass
class Bench:
    """One `bench=` line: its case name and its key=value figures."""

    case: str
    fields: dict[str, str]

    def num(self, key: str) -> float:
        """A figure as a number (NaN when absent or not numeric)."""
        try:
            return float(self.fields[key])
        except (KeyError, ValueError):
            return math.nan


def read_benches(path: Path) -> list[Bench]:
    """Every `bench=` line of a log file, in order."""
    out: list[Bench] = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        m = BENCH_LINE.match(line.strip())
        if not m:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
        out.append(Bench(m.group(1), fields))
    return out


def read_csv(path: Path) -> list[dict[str, float]]:
    """A numeric CSV as a list of rows (NaN for empty or non-numeric cells)."""
    rows: list[dict[str, float]] = []
    with path.open() as f:
        for row in csv.DictReader(f):
            parsed: dict[str, float] = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v)
                except (TypeError, ValueError):
                    parsed[k] = math.nan
            rows.append(parsed)
    return rows


def fmt(v: float, digits: int = 2) -> str:
    """A figure for a table: thousands separated, '—' for missing."""
    if v is None or math.isnan(v):
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def drain_runs(run: Path) -> list[tuple[int, Bench, Path]]:
    """The drain runs at each worker count: (workers, bench line, series CSV)."""
    runs = []
    for log in sorted(run.glob("drain-*.log")):
        lines = [b for b in read_benches(log) if b.case == "scale_drain"]
        if not lines:
            continue
        b = lines[-1]
        csv_path = log.with_suffix(".csv")
        runs.append((int(b.num("workers")), b, csv_path))
    runs.sort(key=lambda r: r[0])
    return runs


def plot_throughput(runs: list[tuple[int, Bench, Path]], out: Path) -> None:
    """Starts per second over time, one line per worker count."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for workers, _, series in runs:
        if not series.exists():
            continue
        rows = read_csv(series)
        prev = 0.0
        xs, ys = [], []
        for r in rows:
            xs.append(r["t_s"])
            ys.append(r["started"] - prev)
            prev = r["started"]
        ax.plot(xs, ys, label=f"{workers} workers")
    ax.set_xlabel("seconds since the first submission")
    ax.set_ylabel("attempts started per second")
    ax.set_title("Throughput over time (scale harness, 10 ms tasks)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_distribution(runs: list[tuple[int, Bench, Path]], column: str, title: str, out: Path) -> None:
    """A latency distribution (quantile curve, log scale) per worker count."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for workers, _, series in runs:
        dist = series.with_suffix(".dist.csv")
        if not dist.exists():
            continue
        rows = [r for r in read_csv(dist) if not math.isnan(r[column]) and r[column] > 0]
        if not rows:
            continue
        ax.plot([r[column] for r in rows], [r["quantile"] * 100 for r in rows], label=f"{workers} workers")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("percent of samples at or below")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_server(runs: list[tuple[int, Bench, Path]], out: Path) -> None:
    """Server CPU and RSS over time for the largest run."""
    if not runs or not runs[-1][2].exists():
        return
    workers, _, series = runs[-1]
    rows = read_csv(series)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["t_s"] for r in rows], [r["server_cpu_pct"] for r in rows], color="tab:red", label="server CPU %")
    ax.plot([r["t_s"] for r in rows], [r["harness_cpu_pct"] for r in rows], color="tab:orange", label="harness CPU %")
    ax.set_xlabel("seconds")
    ax.set_ylabel("CPU % of one core")
    ax2 = ax.twinx()
    ax2.plot([r["t_s"] for r in rows], [r["server_rss_mib"] for r in rows], color="tab:blue", label="server RSS MiB")
    ax2.set_ylabel("MiB")
    ax.set_title(f"Server CPU and memory over time ({workers} workers)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def goal(met: bool) -> str:
    return "met" if met else "**not met**"


def e2e_section(run: Path) -> list[str]:
    """End to end on one worker: Drover beside xargs (and beside an older build)."""
    benches = read_benches(run / "e2e.log")
    lines = ["## End to end: one server, one worker with 2 slots (`e2e --throughput`)", ""]
    true_m = [b for b in benches if b.case == "e2e_true_median"]
    sleep_m = [b for b in benches if b.case == "e2e_sleep_median"]
    if not true_m and not sleep_m:
        return lines + ["(not run)", ""]
    lines += [
        "| build | tasks | Drover s | baseline s | ratio | goal | server µs/task | worker µs/task |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in true_m:
        ratio = b.num("ratio")
        lines.append(
            f"| {b.fields.get('build', '')} | {fmt(b.num('tasks'))} × `/bin/true` | {fmt(b.num('drover_s'))} | "
            f"{fmt(b.num('xargs_s'))} (`xargs -P 2`) | {fmt(ratio)} | ≥ 0.9: {goal(ratio >= 0.9)} | "
            f"{fmt(b.num('server_cpu_us_per_task'))} | {fmt(b.num('worker_cpu_us_per_task'))} |"
        )
    for b in sleep_m:
        ratio = b.num("ratio")
        lines.append(
            f"| {b.fields.get('build', '')} | {fmt(b.num('tasks'))} × `sleep 0.05` | {fmt(b.num('drover_s'))} | "
            f"{fmt(b.num('ideal_s'))} (ideal) | {fmt(ratio, 3)} | ≤ 1.1: {goal(ratio <= 1.1)} | | |"
        )
    lines += ["", "Medians of three rounds; each round runs its own baseline right beside it.", ""]
    return lines


def scale_section(run: Path, runs: list[tuple[int, Bench, Path]]) -> list[str]:
    lines = [
        "## At scale: simulated workers (real agents, real sockets) against one real server (`scale`)",
        "",
        "Each worker has one slot; each task lasts 10 ms. The ideal makespan is"
        " tasks × 10 ms / workers.",
        "",
        "| workers | tasks | end to end s | ideal s | ratio to ideal | starts/s | submit→start p50 / p99 ms | API p50 / p99 ms | server µs/task | server peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workers, b, _ in runs:
        tasks = b.num("tasks")
        ideal = tasks * b.num("duration_ms") / 1000.0 / max(1.0, workers * b.num("slots"))
        e2e = b.num("e2e_s")
        lines.append(
            f"| {workers} | {fmt(tasks)} | {fmt(e2e)} | {fmt(ideal)} | {fmt(e2e / ideal if ideal else math.nan)} | "
            f"{fmt(b.num('starts_per_s'))} | {fmt(b.num('submit_to_start_p50_ms'))} / {fmt(b.num('submit_to_start_p99_ms'))} | "
            f"{fmt(b.num('api_p50_ms'))} / {fmt(b.num('api_p99_ms'))} | {fmt(b.num('server_cpu_us_per_task'))} | "
            f"{fmt(b.num('server_peak_rss_mib'))} |"
        )
    rate = [b for b in read_benches(run / "rate.log") if b.case == "scale_drain"]
    if rate:
        b = rate[-1]
        p99 = b.num("submit_to_start_p99_ms")
        api = b.num("api_p99_ms")
        lines += [
            "",
            f"Arrivals below capacity (`--rate {b.fields.get('rate')}`, {b.fields.get('workers')} workers, "
            f"{fmt(b.num('tasks'))} tasks): submit→start p50 {fmt(b.num('submit_to_start_p50_ms'))} ms, "
            f"p99 {fmt(p99)} ms (goal ≤ 50: {goal(p99 <= 50)}); API status p99 {fmt(api)} ms "
            f"(goal ≤ 10: {goal(api <= 10)}).",
        ]
    big = [r for r in runs if r[0] >= 1000]
    if big:
        e2e = big[-1][1].num("e2e_s")
        tasks = big[-1][1].num("tasks")
        lines += [
            "",
            f"Goal: 1,000,000 tasks across 1,000 workers in ≤ 60 s; this run: {fmt(tasks)} tasks in"
            f" {fmt(e2e)} s ({goal(tasks >= 1_000_000 and e2e <= 60)}).",
        ]
    lines += [
        "",
        "![throughput over time](throughput.png)",
        "",
        "![submit to start distribution](submit_to_start.png)",
        "",
        "![API latency distribution](api_latency.png)",
        "",
        "![server CPU and memory](server.png)",
        "",
    ]
    return lines


def queued_section(run: Path) -> list[str]:
    benches = [b for b in read_benches(run / "queued.log") if b.case == "scale_queued"]
    lines = ["## Queued tasks: memory and start-up (`scale --only queued`)", ""]
    if not benches:
        return lines + ["(not run)", ""]
    lines += [
        "| build | tasks | acknowledged s (goal ≤ 5) | RSS queued MiB (goal ≤ 1,024 at 1M) | bytes/task | restart to serving s (goal ≤ 5) | RSS after restart MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in benches:
        lines.append(
            f"| {b.fields.get('build', '')} | {fmt(b.num('tasks'))} | {fmt(b.num('ack_s'))} | {fmt(b.num('server_rss_idle_mib'))} | "
            f"{fmt(b.num('bytes_per_queued_task'))} | {fmt(b.num('restart_to_serving_s'))} | {fmt(b.num('restarted_rss_mib'))} |"
        )
    return lines + [""]


def core_section(run: Path) -> list[str]:
    benches = read_benches(run / "core.log")
    lines = ["## Scheduling core (`drover-sched` bench `core`, one core, no I/O)", ""]
    if not benches:
        return lines + ["(not run)", ""]
    lines += ["| case | figures |", "|---|---|"]
    for b in benches:
        shown = " ".join(f"{k}={v}" for k, v in list(b.fields.items())[:8])
        lines.append(f"| {b.case} | {shown} |")
    return lines + [""]


def profile_section(run: Path) -> list[str]:
    lines = ["## Where the CPU goes (perf, during the e2e `/bin/true` run)", ""]
    files = sorted(run.glob("perf-*.txt"))
    if not files:
        return lines + ["(no profile: perf was not available or `--no-profile` was given)", ""]
    for f in files:
        lines += [f"### {f.stem.removeprefix('perf-')}", "", "```", f.read_text().rstrip(), "```", ""]
    return lines


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: bench_report.py RUN_DIR OUT_DIR", file=sys.stderr)
        return 2
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    runs = drain_runs(run)
    plot_throughput(runs, out / "throughput.png")
    plot_distribution(runs, "submit_to_start_ms", "Submit → start latency (whole run)", out / "submit_to_start.png")
    plot_distribution(runs, "api_ms", "API status latency during the run", out / "api_latency.png")
    plot_server(runs, out / "server.png")
    meta = (run / "meta.txt").read_text().strip() if (run / "meta.txt").exists() else ""
    lines = [
        "# Benchmark report (generated)",
        "",
        "Written by `scripts/bench-report.sh`; do not edit by hand. Every figure is beside"
        " its baseline from the same run. The machine is shared and noisy: compare rows of"
        " one report, not figures across reports.",
        "",
        "```",
        meta,
        "```",
        "",
    ]
    lines += e2e_section(run)
    lines += scale_section(run, runs)
    lines += queued_section(run)
    lines += core_section(run)
    lines += profile_section(run)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
