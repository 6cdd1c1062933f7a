#!/usr/bin/env bash
# Regenerates docs/benchmarks/report.md and its plots in one command: runs the end-to-end
# bench (Drover beside xargs, and beside an older build with --baseline), the scale
# harness at 1, 10, 100 and 1,000 simulated workers, a run with arrivals below capacity,
# the queued case (memory and restart), the scheduling core, and a perf profile of the
# server and the worker; then plots and tables (scripts/bench_report.py).
#
#   scripts/bench-report.sh                    # full scale: about 30 minutes on 2 cores
#   scripts/bench-report.sh --quick            # 1/100 scale, a few minutes (a smoke run)
#   scripts/bench-report.sh --baseline REV     # also an older build, side by side
#   scripts/bench-report.sh --out DIR          # write somewhere else (default docs/benchmarks)
#   scripts/bench-report.sh --no-profile       # skip perf
#
# Run it on a quiet machine: the figures are only comparable within one report.
# No `| head` in this script: with pipefail, a writer cut off by head dies of SIGPIPE and
# the script exits 141 (it did, in CI, once the core bench printed a sixth line).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=""
baseline=""
out="$root/docs/benchmarks"
profile=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --baseline) baseline="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-profile) profile=0 ;;
    *) echo "unknown option: $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done

run=$(mktemp -d /tmp/drover-bench-report.XXXXXX)
echo "run directory: $run"
step() { printf '\n== %s\n' "$*"; }

# Plots need matplotlib: a venv of our own under target/, made once.
venv="$root/target/bench-report-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  step "installing matplotlib into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'matplotlib>=3.8'
fi

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "scale: ${quick:-full}"
} > "$run/meta.txt"

step "building the benches (release)"
cargo bench -p drover-cli --no-run --bench e2e --bench scale -q 2>&1 | tail -3
cargo bench -p drover-sched --no-run --bench core -q 2>&1 | tail -3

if [ -n "$baseline" ]; then
  step "building the baseline $baseline"
  base_tree="$root/target/bench-baseline-src"
  rm -rf "$base_tree"
  git worktree add -f --detach "$base_tree" "$baseline" >/dev/null
  (cd "$base_tree" && CARGO_TARGET_DIR="$root/target/bench-baseline" cargo build --release -q -p drover-cli)
  git worktree remove --force "$base_tree"
  export DROVER_BENCH_BASELINE="$root/target/bench-baseline/release/drover"
  echo "baseline: $baseline ($(git rev-parse --short "$baseline"))" >> "$run/meta.txt"
fi

# Descendants of a process (the benches start the server and the worker as children).
descendants() {
  local pids="$1" all="" next
  while [ -n "$pids" ]; do
    all="$all $pids"
    next=""
    for p in $pids; do next="$next $(ps -o pid= --ppid "$p" 2>/dev/null | tr -d ' ')"; done
    pids=$(echo $next)
  done
  echo $all
}

# perf of the server and the worker while the e2e bench runs: waits for them to appear
# under the bench's process, records each for 20 s, and summarises by library and symbol.
profile_e2e() {
  local bench_pid="$1" server="" worker="" tries=0
  while [ -z "$server" ] || [ -z "$worker" ]; do
    sleep 0.5
    tries=$((tries + 1))
    [ $tries -gt 240 ] && return 0
    kill -0 "$bench_pid" 2>/dev/null || return 0
    for p in $(descendants "$bench_pid"); do
      args=$(ps -o args= -p "$p" 2>/dev/null || true)
      case "$args" in
        # `drover --data-dir DIR server ...` (global options come first).
        *drover*" server "*) [ -z "$server" ] && server=$p ;;
        *drover*" worker "*) [ -z "$worker" ] && worker=$p ;;
      esac
    done
  done
  sleep 3
  local recorders=""
  for who in server worker; do
    pid=${!who}
    perf record -q -F 499 -g -p "$pid" -o "$run/perf-$who.data" -- sleep 20 >/dev/null 2>&1 &
    recorders="$recorders $!"
  done
  # Only the recorders: a bare `wait` would also reap the bench itself, and the
  # caller's `wait` for it would then fail (127).
  wait $recorders || true
  for who in server worker; do
    [ -s "$run/perf-$who.data" ] || continue
    {
      echo "by library (self time):"
      perf report -q -i "$run/perf-$who.data" --no-children --sort dso --percent-limit 1 --stdio -g none 2>/dev/null | awk 'NF && n++ < 15'
      echo
      echo "hottest symbols (self time, ≥ 1%):"
      perf report -q -i "$run/perf-$who.data" --no-children --sort sym --percent-limit 1 --stdio -g none 2>/dev/null | awk 'NF && n++ < 25'
    } > "$run/perf-$who.txt"
  done
}

step "end to end: /bin/true beside xargs -P 2, sleep 0.05 beside the ideal"
cargo bench -p drover-cli --bench e2e -- --throughput $quick > "$run/e2e.log" 2>&1 &
e2e_pid=$!
if [ $profile = 1 ] && command -v perf >/dev/null 2>&1; then
  profile_e2e "$e2e_pid" || true
elif [ $profile = 1 ]; then
  echo "perf not found: the report will have no profile"
fi
wait "$e2e_pid"
grep '^bench=' "$run/e2e.log"

scale_div=1
[ -n "$quick" ] && scale_div=100
for workers in 1 10 100 1000; do
  tasks=$(( workers * 2000 ))
  [ $tasks -gt 1000000 ] && tasks=1000000
  tasks=$(( tasks / scale_div ))
  [ $tasks -lt 200 ] && tasks=200
  batch=$(( tasks < 10000 ? tasks : 10000 ))
  step "scale: $workers workers, $tasks tasks of 10 ms"
  cargo bench -p drover-cli --bench scale -- --only drain --workers "$workers" --tasks "$tasks" \
    --batch "$batch" --csv "$run/drain-$workers.csv" > "$run/drain-$workers.log" 2>&1
  grep '^bench=' "$run/drain-$workers.log"
done

step "scale: arrivals below capacity (1,000 workers, 4,000 tasks/s)"
cargo bench -p drover-cli --bench scale -- --only drain --workers 1000 --rate 4000 --batch 100 \
  --tasks $(( 100000 / scale_div )) --csv "$run/rate.csv" > "$run/rate.log" 2>&1
grep '^bench=' "$run/rate.log"

step "queued: one job of $(( 1000000 / scale_div )) tasks, memory and restart"
queued_extra=""
[ -n "${DROVER_BENCH_BASELINE:-}" ] && queued_extra="--baseline $DROVER_BENCH_BASELINE"
cargo bench -p drover-cli --bench scale -- --only queued --tasks $(( 1000000 / scale_div )) $queued_extra \
  > "$run/queued.log" 2>&1
grep '^bench=' "$run/queued.log"

step "scheduling core"
cargo bench -p drover-sched --bench core -- $quick > "$run/core.log" 2>&1
grep '^bench=' "$run/core.log"

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$run/meta.txt"
step "report"
"$venv/bin/python" scripts/bench_report.py "$run" "$out"
echo "raw logs kept in $run"
