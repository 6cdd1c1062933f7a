"""The SDK against a real server and real workers: function tasks, futures,
dependencies, failures, and the plain task API (submit, get, wait, cancel, logs, events)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import drover
from drover import Client, DependencyFailed, PayloadTooLarge, RemoteTraceback, TaskCancelled, TaskFailed

WAIT = 60.0


def add(x, y):
    return x + y


def square(x):
    return x * x


def sum_of_squares(lo, hi):
    return sum(i * i for i in range(lo, hi))


def total(parts):
    return sum(parts)


def divide(x, y):
    return x / y


def chatty(x):
    print("hello from the task")  # to stdout: must not spoil the result
    os.system("echo from a subprocess")
    return {"x": x, "where": os.getcwd() != ""}


def slow(seconds):
    time.sleep(seconds)
    return "woke"


class Odd(Exception):
    """An exception class of this module: rebuilt on the client side."""


def raise_odd(code):
    raise Odd(f"odd code {code}")


def test_function_returns_its_value(client: Client) -> None:
    f = client.submit(add, 3, 4)
    assert f.result(timeout=WAIT) == 7
    info = client.get(f.task_id)
    assert info["state"] == "succeeded"
    assert info["spec"]["command"][1:] == ["-m", "drover.runner"]


def test_map_and_gather_keep_order(client: Client) -> None:
    futures = client.map(square, range(12))
    assert len({f.task_id for f in futures}) == 12
    assert drover.gather(futures, timeout=WAIT) == [i * i for i in range(12)]
    # One job for the whole map.
    assert len({client.get(f.task_id)["job"] for f in futures}) == 1


def test_split_combine_sum_of_squares_with_dependencies(client: Client) -> None:
    n, parts = 100_000, 8
    step = n // parts
    pieces = client.map(sum_of_squares, range(0, n, step), range(step, n + step, step))
    combined = client.submit(total, pieces)
    assert combined.result(timeout=WAIT) == sum(i * i for i in range(n))
    # A real dependency: the combine step waited for every piece, in order.
    info = client.get(combined.task_id)
    assert info["deps"] == [p.task_id for p in pieces]
    started = info["started_at"]
    for p in pieces:
        assert client.get(p.task_id)["ended_at"] <= started


def test_futures_as_keyword_and_nested_arguments(client: Client) -> None:
    a = client.submit(add, 1, 2)
    b = client.submit(square, a)  # 9
    c = client.submit(add, x=b, y=a)  # 12, two deps, one of them twice over
    d = client.submit(total, [a, b, c])  # 3 + 9 + 12
    assert d.result(timeout=WAIT) == 24
    assert client.get(c.task_id)["deps"] == [b.task_id, a.task_id]
    # Values arrive in argument order, not id order: b (the later task) first here.
    assert client.submit(lambda x, y: x - y, b, a).result(timeout=WAIT) == 6


def test_exception_is_reraised_with_remote_traceback(client: Client) -> None:
    f = client.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as err:
        f.result(timeout=WAIT)
    cause = err.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in divide" in cause.text and "ZeroDivisionError: division by zero" in cause.text
    assert client.get(f.task_id)["state"] == "failed"
    assert isinstance(f.exception(), ZeroDivisionError)
    # An exception class of the caller's own module comes back as itself.
    with pytest.raises(Odd, match="odd code 5"):
        client.submit(raise_odd, 5).result(timeout=WAIT)


def test_failed_dependency_fails_the_dependent(client: Client) -> None:
    bad = client.submit(divide, 1, 0)
    after = client.submit(square, bad)
    with pytest.raises(DependencyFailed):
        after.result(timeout=WAIT)
    assert client.get(after.task_id)["state"] == "dependency_failed"


def test_prints_go_to_stderr_not_into_the_result(client: Client) -> None:
    f = client.submit(chatty, 5)
    assert f.result(timeout=WAIT) == {"x": 5, "where": True}
    err = client.logs(f.task_id, stream="stderr")
    assert "hello from the task" in err and "from a subprocess" in err


def test_value_larger_than_the_result_limit_is_read_from_stdout(client: Client) -> None:
    # The worker keeps 64 KiB of stdout as the result; the whole line is in the output.
    f = client.submit(lambda n: "x" * n, 300_000)
    assert f.result(timeout=WAIT) == "x" * 300_000
    assert client.get(f.task_id)["result"].startswith('{"drover_python"')


def test_retries_option_and_lambda_closures(client: Client) -> None:
    base = 10
    f = client.with_options(retries=2, cpus=0.5, name="closure").submit(lambda x: x + base, 5)
    assert f.result(timeout=WAIT) == 15
    info = client.get(f.task_id)
    assert info["name"] == "closure" and info["max_attempts"] == 3
    assert info["spec"]["resources"]["cpu_milli"] == 500


def test_cancel(client: Client) -> None:
    f = client.submit(slow, 60)
    assert f.cancel()
    with pytest.raises(TaskCancelled):
        f.result(timeout=WAIT)


def test_wait_times_out(client: Client) -> None:
    f = client.submit(slow, 30)
    with pytest.raises(drover.Timeout):
        f.result(timeout=0.5)
    f.cancel()


def test_missing_interpreter_is_a_clear_failure(client: Client) -> None:
    f = client.with_options(python="/nonexistent/python3").submit(add, 1, 2)
    with pytest.raises(TaskFailed) as err:
        f.result(timeout=WAIT)
    assert err.value.state == "failed"
    assert "spawn" in str(err.value).lower() or "nonexistent" in str(err.value)


def test_payload_too_large_is_refused_before_submitting(client: Client) -> None:
    with pytest.raises(PayloadTooLarge):
        client.submit(len, os.urandom(300_000))


def test_command_tasks_get_wait_logs(client: Client) -> None:
    f = client.submit(["sh", "-c", "echo hi; echo oops >&2"])
    info = client.wait(f.task_id, timeout=WAIT)
    assert info["state"] == "succeeded"
    assert f.result() == "hi\n"
    assert client.logs(f) == "hi\n"
    assert client.logs(f, stream="stderr") == "oops\n"
    g = client.submit({"command": ["false"], "name": "nope"})
    with pytest.raises(TaskFailed, match="exited"):
        g.result(timeout=WAIT)
    with pytest.raises(TypeError):
        client.submit(add, g)  # a command task's value cannot be passed


def test_events_stream_tells_the_end_of_a_task(client: Client) -> None:
    f = client.submit(add, 20, 22)
    assert f.result(timeout=WAIT) == 42
    seen = []
    for event in client.events(task=f.task_id, since="0-0", timeout=WAIT):
        seen.append(event)
        if event["event"] == "task" and event["data"].get("state") == "succeeded":
            break
    assert seen[0]["event"] == "open"
    assert seen[-1]["data"]["task"] == f.task_id


def test_wrong_token_is_refused(cluster) -> None:
    bad = Client(cluster.url, "not-the-token", ca=cluster.ca)
    with pytest.raises(drover.ApiError) as err:
        bad.get(1)
    assert err.value.status == 401


def test_tls_is_checked_against_the_clusters_ca(cluster, tmp_path: Path, monkeypatch) -> None:
    # No CA given nor found: the server's certificate is not trusted.
    monkeypatch.setenv("DROVER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DROVER_CA", raising=False)
    untrusting = Client(cluster.url, cluster.token)
    with pytest.raises(requests.exceptions.SSLError):
        untrusting.cluster()


def test_discovers_the_local_server_like_the_cli(cluster, monkeypatch) -> None:
    for var in ("DROVER_SERVER", "DROVER_TOKEN", "DROVER_CA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DROVER_DATA_DIR", str(cluster.data))
    found = Client()
    assert (found.url, found.ca) == (cluster.url, cluster.ca)
    assert found.submit(add, 1, 1).result(timeout=WAIT) == 2


def test_example_script_runs(cluster) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "python_sum_of_squares.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env["DROVER_DATA_DIR"] = str(cluster.data)
    out = subprocess.run(
        [sys.executable, str(script), "200000", "10"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(sum(i * i for i in range(1, 200_001)))
