"""A real Drover cluster for the tests: one `drover server` and two `drover worker`
processes on loopback, over TLS with the server's own CA, in a fresh data directory.

The binary is ``$DROVER_BIN``, else ``target/debug/drover`` of this checkout. Workers
run tasks as ``nobody`` when the tests run as root, and a function task runs
``python3 -m drover.runner``: the workers get a ``PATH`` that starts with the
directory of the interpreter running these tests (a virtual environment with this
package installed, in a directory ``nobody`` can read: ``scripts/test.sh`` makes one in
``target/python-venv``).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60.0


@dataclass
class Cluster:
    """The processes and where to reach them."""

    data: Path
    url: str
    token: str
    ca: str
    #: The directory of the interpreter the workers' tasks run (first on their PATH).
    python_bin: Path
    procs: List[subprocess.Popen] = field(default_factory=list)

    def logs(self) -> str:
        """Every process's log, for a failing test's message."""
        out = []
        for log in sorted(self.data.glob("*.log")):
            out.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


def _binary() -> Path:
    path = Path(os.environ.get("DROVER_BIN") or REPO / "target" / "debug" / "drover")
    if not path.is_file():
        pytest.fail(f"no drover binary at {path}: run `cargo build -p drover-cli` or set DROVER_BIN")
    return path


def _get(url: str, ca: str, token: str = "") -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return r.read()


def _readable_by_others(path: Path) -> bool:
    """Whether ``nobody`` could run ``path`` (every directory up to it traversable)."""
    real = path.resolve()
    for p in [real, *real.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            return False
    return bool(real.stat().st_mode & 0o004)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    drover = _binary()
    python_bin = Path(sys.executable).parent
    if os.geteuid() == 0 and not _readable_by_others(Path(sys.executable)):
        pytest.fail(
            f"the workers run tasks as nobody, who cannot run {sys.executable}: run the tests "
            "from a virtual environment in a world-readable directory (scripts/test.sh does)"
        )
    # World-traversable, so that tasks running as nobody reach their attempt directories.
    data = Path(tempfile.mkdtemp(prefix="drover-py-"))
    os.chmod(data, 0o755)
    c = Cluster(data=data, url="", token="", ca="", python_bin=python_bin)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env["DROVER_LOG"] = "info,openraft=warn"
    server_log = open(data / "server.log", "ab")
    c.procs.append(
        subprocess.Popen(
            [str(drover), "--data-dir", str(data), "server", "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=server_log,
            env=env,
        )
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        endpoint = data / "server" / "endpoint"
        while True:
            if c.procs[0].poll() is not None:
                pytest.fail(f"the server exited early\n{c.logs()}")
            try:
                c.url = endpoint.read_text().strip()
                c.ca = str(data / "server" / "tls" / "ca.crt")
                if c.url and b'"leader":true' in _get(c.url + "/v1/health", c.ca).replace(b" ", b""):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not up within {STARTUP_SECONDS} s\n{c.logs()}")
            time.sleep(0.1)
        c.token = (data / "server" / "token").read_text().strip()
        worker_env = dict(env, PATH=f"{python_bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}")
        for name in ("py-1", "py-2"):
            log = open(data / f"worker-{name}.log", "ab")
            c.procs.append(
                subprocess.Popen(
                    [str(drover), "--data-dir", str(data), "--server", c.url, "--token", c.token,
                     "--ca", c.ca, "worker", "--name", name, "--cpus", "2", "--kill-grace", "1s"],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=worker_env,
                )
            )
        import json

        while True:
            workers = json.loads(_get(c.url + "/v1/workers", c.ca, c.token))
            if sum(1 for w in workers if w.get("connected")) == 2:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not connect within {STARTUP_SECONDS} s\n{c.logs()}")
            time.sleep(0.1)
        yield c
    finally:
        for p in reversed(c.procs):
            p.terminate()
        for p in reversed(c.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def client(cluster: Cluster):
    """A client of the test cluster, given its URL, token and CA explicitly."""
    from drover import Client

    with Client(cluster.url, cluster.token, ca=cluster.ca) as c:
        yield c
