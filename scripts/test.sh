#!/usr/bin/env bash
# Every check and test Drover has, from a fresh machine: installs what the tests need,
# then formatting, lints, the whole test suite, and a smoke run of every benchmark at
# 1/100 scale (so benchmarks cannot rot). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (install it, or run as root on Debian)" >&2
    exit 1
  fi
}
# The driver tests use python3 (a memory hog) and /bin/sh; the agent reads /proc.
command -v python3 >/dev/null 2>&1 || apt_install python3
# The partition tests put a worker in a network namespace (iproute2, nsenter) and cut
# it off with packet filters (iptables, ss from iproute2).
command -v ip >/dev/null 2>&1 || apt_install iproute2
command -v nsenter >/dev/null 2>&1 || apt_install util-linux
command -v iptables >/dev/null 2>&1 || apt_install iptables
# The API fuzzing (schemathesis, installed into a venv by its script) needs venv and curl.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
command -v curl >/dev/null 2>&1 || apt_install curl
# `drover top`'s live view is tested in a real terminal emulator.
command -v tmux >/dev/null 2>&1 || apt_install tmux
# The wall-clock step test runs a server and a worker under libfaketime (LD_PRELOAD).
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || apt_install faketime
# The disk-full tests mount small tmpfs file systems (mount, umount).
command -v mount >/dev/null 2>&1 || apt_install mount
# The web UI's browser tests (crates/drover-cli/tests/ui.rs) drive headless Chromium
# through chromedriver (without recommends: else it pulls a hundred more packages).
{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
  || apt_install --no-install-recommends chromium chromium-driver
# The object store tests (crates/drover-cli/tests/object_store.rs) run against moto's
# S3-compatible server mode, from PyPI, in its own venv (the test finds it there).
if ! target/moto-venv/bin/moto_server --help >/dev/null 2>&1; then
  python3 -m venv target/moto-venv
  target/moto-venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
# The autoscaler's test (crates/drover-cli/tests/autoscale.rs) runs worker containers from
# an image it builds itself (scripts/build-worker-image.sh; nothing is pulled): it needs
# a running Docker engine (or DROVER_SKIP_DOCKER=1, which it reports as a skip).
command -v docker >/dev/null 2>&1 || apt_install docker.io
docker info >/dev/null 2>&1 || [ "${DROVER_SKIP_DOCKER:-}" = 1 ] \
  || echo "warning: no Docker engine answers; the autoscale test will fail (start dockerd, or set DROVER_SKIP_DOCKER=1)" >&2
# The docker driver's tests run containers of an image assembled from this host's own
# binaries (nothing can be pulled; under a second when it exists already). Docker is
# required unless DROVER_SKIP_DOCKER=1, which skips those tests visibly.
if [ "${DROVER_SKIP_DOCKER:-}" != 1 ]; then
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  scripts/docker-test-image.sh >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Disk: a cold run writes about NN GiB under target/. Incremental compilation data is
# most of a debug target's size and buys nothing in a run that compiles once, so CI
# (CI=true) turns it off; developers keep it. Free space is printed before and after,
# so a run that dies of a full disk says so at once.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
disk() { df -h --output=avail,target . 2>/dev/null | tail -n 1 | awk '{print "free disk: " $1 " on " $2}'; }
disk
trap disk EXIT
step() { printf '\n== %s\n' "$*"; disk; }

step "format"
cargo fmt --all -- --check
step "lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "tests"
cargo test --workspace
step "Python SDK (pytest against a real server and workers)"
scripts/python-tests.sh
step "API fuzzing against the OpenAPI document (schemathesis)"
scripts/schemathesis.sh
step "benchmark smoke runs (1/100 scale; figures are not meaningful here)"
cargo bench -p drover-sched --bench core -- --quick
cargo bench -p drover-exec --bench spawn -- --quick
cargo bench -p drover-cli --bench e2e -- --quick
cargo bench -p drover-cli --bench ha -- --quick
cargo bench -p drover-server --bench snapshot -- --quick
cargo bench -p drover-state --bench retention -- --quick
cargo bench -p drover-cli --bench retention -- --quick
# The benchmark report at 1/100 scale, into a scratch directory (docs/benchmarks is
# regenerated at full scale by hand): the scale harness at 1, 10, 100 and 1,000 simulated
# workers (real agents, real sockets) against a real server, arrivals below capacity,
# the queued case (memory and restart), then the plots and tables.
scripts/bench-report.sh --quick --no-profile --out "$(mktemp -d /tmp/drover-report.XXXXXX)"
