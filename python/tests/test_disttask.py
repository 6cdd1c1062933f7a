"""The DistTask-compatible routes against a real server and real workers: the seed's
client example, run as a script with only the URL and an Authorization header added,
then `curl` of `/get_results` and `/status` as the seed shows them."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import requests

from drover import serialize_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "disttask"
WAIT = 60.0


def _curl(cluster, path: str, token: str) -> Dict[str, Any]:
    # CURL_CA_BUNDLE: curl trusts the cluster's CA, as the README tells users to do.
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {token}", cluster.url + path],
        env=dict(os.environ, CURL_CA_BUNDLE=cluster.ca),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _results_for(cluster, ids: List[int]) -> Dict[int, Dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    while True:
        body = _curl(cluster, "/get_results", cluster.token)
        found = {r["task_id"]: r for r in body["results"] if r["task_id"] in ids}
        if len(found) == len(ids):
            return found
        assert time.monotonic() < deadline, f"no results for {ids} in {body}\n{cluster.logs()}"
        time.sleep(0.2)


def test_seed_example_runs_with_url_and_header_only(cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_")}
    env.update(DROVER_URL=cluster.url, TOKEN=cluster.token, REQUESTS_CA_BUNDLE=cluster.ca)
    out = subprocess.run(
        [sys.executable, "submit_task.py"], cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    answer = ast.literal_eval(out.stdout.strip())  # the example prints the answer as a dict
    assert answer["message"] == "task submitted"
    task_id = answer["task_id"]
    result = _results_for(cluster, [task_id])[task_id]
    assert result == {"task_id": task_id, "state": "succeeded", "result": 7}
    # The task is an ordinary Drover task.
    info = requests.get(
        f"{cluster.url}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {cluster.token}"}, verify=cluster.ca
    ).json()
    assert info["spec"]["labels"] == {"drover.api": "disttask"}
    assert info["spec"]["command"] == ["python3", "-m", "drover.runner"]


def test_status_lists_the_workers(cluster) -> None:
    body = _curl(cluster, "/status", cluster.token)
    assert sorted(w["name"] for w in body["workers"]) == ["py-1", "py-2"]
    assert all(w["connected"] for w in body["workers"])
    assert "succeeded" in body["tasks"]


def test_exceptions_and_non_json_values(cluster) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}"}

    def post(task: str) -> int:
        r = requests.post(cluster.url + "/submit_task", json={"task": task}, headers=headers, verify=cluster.ca)
        assert r.status_code == 201, r.text
        return int(r.json()["task_id"])

    def boom(x):
        raise KeyError(x)

    failing = post(serialize_task(boom, "k"))
    a_set = post(serialize_task(lambda: {1, 2}))
    got = _results_for(cluster, [failing, a_set])
    assert got[failing]["state"] == "failed"
    assert got[failing]["error"] == "KeyError: 'k'"
    assert "in boom" in got[failing]["traceback"]
    assert got[a_set] == {"task_id": a_set, "state": "succeeded", "result": "{1, 2}"}


def test_routes_are_authenticated_and_bodies_checked(cluster) -> None:
    for method, path in (("POST", "/submit_task"), ("GET", "/get_results"), ("GET", "/status")):
        r = requests.request(method, cluster.url + path, json={"task": "AAAA"}, verify=cluster.ca)
        assert r.status_code == 401, (path, r.text)
    headers = {"Authorization": f"Bearer {cluster.token}"}
    for body, field in (({"task": "not base64!"}, "task"), ({"task": "AAAA", "x": 1}, None), ({}, None)):
        r = requests.post(cluster.url + "/submit_task", json=body, headers=headers, verify=cluster.ca)
        assert r.status_code == 400, (body, r.text)
        if field:
            assert r.json()["error"]["field"] == field
    r = requests.get(cluster.url + "/get_results?limit=0", headers=headers, verify=cluster.ca)
    assert r.status_code == 400 and r.json()["error"]["field"] == "limit"


def test_a_read_token_cannot_submit(cluster) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    r = requests.post(cluster.url + "/v1/tokens", json={"role": "read"}, headers=headers, verify=cluster.ca)
    assert r.status_code in (200, 201), r.text
    read = r.json()["secret"]
    r = requests.post(
        cluster.url + "/submit_task",
        json={"task": serialize_task(len, "abc")},
        headers={"Authorization": f"Bearer {read}"},
        verify=cluster.ca,
    )
    assert r.status_code == 403, r.text
    assert _curl(cluster, "/get_results", read)["results"] is not None
