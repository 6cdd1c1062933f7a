#!/usr/bin/env bash
# Fuzzes the live HTTP API against its own OpenAPI document with schemathesis: starts
# `drover server` on an ephemeral loopback port with a fresh data directory, runs every
# check on every documented operation, stops the server. Exits non-zero on any
# failure. Installs schemathesis into target/schemathesis-venv on first use.
#
#   scripts/schemathesis.sh [extra schemathesis options]
#
# Settings (which operations, which statuses count as accepting schema-valid data)
# are in scripts/schemathesis*.toml, with the reason for each.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/schemathesis-venv
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q 'version 4\.'; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

cargo build --quiet -p drover-cli
DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
target/debug/drover --data-dir "$DATA" server --listen 127.0.0.1:0 >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  [ -s "$DATA/server/endpoint" ] && curl -fsS --cacert "$DATA/server/tls/ca.crt" "$(cat "$DATA/server/endpoint")/v1/health" >/dev/null 2>&1 && break
  sleep 0.2
done
URL=$(cat "$DATA/server/endpoint")
TOKEN=$(cat "$DATA/server/token")
# The server serves HTTPS with the CA it made in its data directory: schemathesis and
# curl trust that CA (and only it).
# schemathesis writes .hypothesis/ and .schemathesis/ into the working directory.
status=0
run() {
  "$VENV/bin/schemathesis" --config-file "$1" run "$URL/v1/openapi.json" \
    --checks all --max-examples 30 --seed 1 \
    --tls-verify "$DATA/server/tls/ca.crt" \
    -H "Authorization: Bearer $TOKEN" "${@:2}" || status=$?
}
# Every operation but the two submissions, then the submissions (see the .toml files).
run scripts/schemathesis.toml --exclude-operation-id submit_task --exclude-operation-id submit_job \
  --exclude-operation-id resize "$@"
run scripts/schemathesis-submit.toml --include-operation-id submit_task --include-operation-id submit_job \
  --include-operation-id resize "$@"
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -50 "$DATA/server.log" >&2
  status=1
fi
exit $status
