#!/bin/bash
# usage: hq-e2e.sh HQ_BINARY N
# The HyperQueue side of the side-by-side in docs/benchmarks.md: one `hq` server and one
# worker with 2 cpus in a fresh directory, N copies of /bin/true as one array job without
# output files, timed from `hq submit --wait`, then `xargs -P 2` right after; prints one
# line in the shape of scripts/perf-e2e.sh's. HyperQueue is built from its own source,
# outside this repository (nothing of it is committed).
HQ=$1; N=$2
[ -x "$HQ" ] && [ -n "$N" ] || { echo "usage: $0 HQ_BINARY N" >&2; exit 2; }
D=$(mktemp -d /tmp/hqe2e.XXXX)
"$HQ" --server-dir "$D" server start >"$D/server.log" 2>&1 & SP=$!
sleep 1.5  # the server writes its access file (as in the measured runs)
"$HQ" --server-dir "$D" worker start --cpus 2 >"$D/worker.log" 2>&1 & WP=$!
until "$HQ" --server-dir "$D" worker list 2>/dev/null | grep -q RUNNING; do sleep 0.1; done
t0=$(date +%s.%N)
"$HQ" --server-dir "$D" submit --array "1-$N" --stdout none --stderr none --wait /bin/true \
  >/dev/null 2>&1 || echo "hq submit failed" >&2
t1=$(date +%s.%N)
x0=$(date +%s.%N); seq "$N" | xargs -P 2 -n 1 /bin/true; x1=$(date +%s.%N)
s=$(echo "$t1 - $t0" | bc); x=$(echo "$x1 - $x0" | bc)
scpu=$(awk '{print $14+$15}' "/proc/$SP/stat"); wcpu=$(awk '{print $14+$15}' "/proc/$WP/stat")
echo "hq n=$N hq_s=$s xargs_s=$x ratio=$(echo "scale=3; $x / $s" | bc) server_ticks=$scpu worker_ticks=$wcpu"
kill "$WP" "$SP"; wait 2>/dev/null; rm -rf "$D"
