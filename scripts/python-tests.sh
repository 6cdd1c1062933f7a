#!/usr/bin/env bash
# The Python SDK's tests (python/tests): pytest against a real `drover server` and two
# real workers that the tests start from target/debug/drover (or $DROVER_BIN).
#
#   scripts/python-tests.sh [pytest options]
#
# Installs the package (pip install ./python) and its test dependencies into
# target/python-venv, made from the system's python3: when the tests run as root the
# workers run tasks as nobody, and a function task runs `python3 -m drover.runner` from
# that environment (the workers' PATH starts with its bin/), so it must live where
# nobody can read it (an interpreter under /root, as pyenv's, is not).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
VENV=target/python-venv
if ! "$VENV/bin/python" -c 'import cloudpickle, requests, pytest, mypy' >/dev/null 2>&1; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'cloudpickle>=3.1,<4' 'requests>=2.28' 'pytest>=8' \
    mypy types-requests
fi
# The package's type hints are checked.
(cd python && "../$VENV/bin/mypy" --ignore-missing-imports drover)
# The checkout's package, installed (not editable) so that tasks import this version.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./python
rm -rf python/build
[ -n "${DROVER_BIN:-}" ] || cargo build --quiet -p drover-cli
exec "$VENV/bin/python" -m pytest -q python/tests "$@"
