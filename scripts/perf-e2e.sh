#!/bin/bash
# usage: perf-e2e.sh BIN N [worker-extra-args] -- CMD...
# Starts a server + worker (2 slots) from BIN in a fresh dir, runs N copies of CMD as one
# array job, prints seconds from submit to the end (CLI --wait), and xargs beside it.
BIN=$1; N=$2; shift 2
WX=()
while [ "$1" != "--" ]; do WX+=("$1"); shift; done; shift
D=$(mktemp -d /tmp/perfe2e.XXXX)
DROVER_LOG=${SLOG:-warn} $BIN --data-dir $D server --listen 127.0.0.1:0 2>$D/server.log & SP=$!
while [ ! -s $D/server/token ] || [ ! -s $D/server/endpoint ]; do sleep 0.05; done
DROVER_LOG=${WLOG:-warn} $BIN --data-dir $D worker --name b --cpus 2 --memory 4G "${WX[@]}" 2>$D/worker.log & WP=$!
until $BIN --data-dir $D workers 2>/dev/null | grep -q " b "; do sleep 0.1; done
[ -n "$PREFETCH" ] && $BIN --data-dir $D policy --prefetch $PREFETCH >/dev/null
echo "server=$SP worker=$WP dir=$D" >&2
[ -n "$PAUSE" ] && { echo "ready; touch $D/go" >&2; while [ ! -e $D/go ]; do sleep 0.1; done; }
t0=$(date +%s.%N)
$BIN --data-dir $D submit --wait --array 0-$((N-1)) -- "$@" >/dev/null 2>&1 || echo "submit failed" >&2
t1=$(date +%s.%N)
if [ "$1" = sleep ]; then x0=0; x1=$(echo "$N * $2 / 2" | bc -l); else
x0=$(date +%s.%N); seq $N | xargs -P 2 -n 1 "$@" 2>/dev/null; x1=$(date +%s.%N); fi
s=$(echo "$t1 - $t0" | bc); x=$(echo "$x1 - $x0" | bc)
scpu=$(awk '{print $14+$15}' /proc/$SP/stat); wcpu=$(awk '{print $14+$15}' /proc/$WP/stat)
echo "n=$N cmd=$* drover_s=$s xargs_or_ideal_s=$x ratio=$(echo "scale=3; $x / $s" | bc) server_ticks=$scpu worker_ticks=$wcpu"
kill $WP; wait $WP 2>/dev/null; kill $SP; wait $SP 2>/dev/null
[ -z "$KEEP" ] && rm -rf $D
