"""The client: Drover's HTTP API from Python, and Python functions as tasks."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, overload

import requests

from . import discovery, payload
from .errors import ApiError, ConfigError, Timeout
from .future import FINAL_STATES, Future, gather

TaskRef = Union[int, str, Future]

#: How long submissions are retried on a lost answer or a 503 (an election), with the
#: same ``Idempotency-Key`` so that nothing is submitted twice.
SUBMIT_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class TaskOptions:
    """What a function task asks for besides its call (see :meth:`Client.with_options`)."""

    #: A name for people (default: the function's name).
    name: Optional[str] = None
    #: Cores, fractional allowed (default 1).
    cpus: float = 1.0
    #: Memory reserved and enforced, in bytes (default: none reserved).
    memory: int = 0
    #: Wall-clock limit of one attempt, in seconds.
    timeout: Optional[float] = None
    #: Attempts after the first.
    retries: int = 0
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Extra environment of the task (e.g. ``PYTHONPATH``).
    env: Mapping[str, str] = field(default_factory=dict)
    #: The interpreter the worker runs, found on the worker's ``PATH`` unless absolute;
    #: it needs the ``drover`` package (and cloudpickle) and the same Python minor
    #: version as the client. Default: ``$DROVER_PYTHON``, else ``python3``.
    python: Optional[str] = None


class Client:
    """A Drover server's API.

    ``url``, ``token`` and ``ca`` default to ``$DROVER_SERVER``, ``$DROVER_TOKEN`` and
    ``$DROVER_CA``, else to the local server's files (see :mod:`drover.discovery`), as the
    CLI finds them. ``ca`` is the cluster's CA certificate file, the only authority
    trusted for an ``https://`` URL when given (TLS is on by default in Drover).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        ca: Optional[str] = None,
        *,
        options: Optional[TaskOptions] = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = (url or discovery.server_url() or "").rstrip("/")
        if not self.url:
            raise ConfigError(
                "no server URL: pass Client(url, token), set DROVER_SERVER, or start a local server (drover up)"
            )
        token = token or discovery.token()
        if not token:
            raise ConfigError("no token: pass Client(url, token), set DROVER_TOKEN, or run where the server's token file is")
        self.ca = ca or discovery.ca_file()
        self.options = options or TaskOptions()
        self.request_timeout = request_timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        # Given with every request: a session's own `verify` loses to REQUESTS_CA_BUNDLE
        # and CURL_CA_BUNDLE in the environment, which would trust other authorities.
        self._verify: Union[str, bool] = self.ca if self.ca else True

    def with_options(self, **changes: Any) -> "Client":
        """A client sharing this one's connection whose function tasks take these
        :class:`TaskOptions` (``cpus=0.5, retries=2, timeout=60, name="train"``)."""
        other = Client.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.options = replace(self.options, **changes)
        return other

    # ---- HTTP

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.request_timeout)
        kw.setdefault("verify", self._verify)
        response = self._session.request(method, self.url + path, **kw)
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _submit(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """Posts a submission, retried on a lost answer or a 503 with one idempotency key."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + SUBMIT_RETRY_SECONDS
        while True:
            try:
                return self._request("POST", path, json=body, headers=headers).json()
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            except ApiError as e:
                if e.status != 503 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    # ---- tasks

    @overload
    def submit(self, task: Callable[..., Any], *args: Any, **kwargs: Any) -> Future: ...

    @overload
    def submit(self, task: Union[Mapping[str, Any], Sequence[str]]) -> Future: ...

    def submit(self, task: Any, *args: Any, **kwargs: Any) -> Future:
        """Submits a task and returns its :class:`Future`.

        ``submit(fn, *args, **kwargs)`` runs ``fn(*args, **kwargs)`` on a worker (a
        function task); a :class:`Future` among the arguments (also inside lists, tuples,
        dicts) makes this task depend on that one and receive its value.
        ``submit({"command": [...], ...})`` submits a task spec as ``POST /v1/tasks``
        takes it, ``submit(["echo", "hi"])`` a command.
        """
        if callable(task):
            spec, _ = self._function_spec(task, args, kwargs)
            answer = self._submit("/v1/tasks", spec)
            return Future(self, int(answer["first"]), function=True)
        if args or kwargs:
            raise TypeError("arguments are for function tasks; a task spec or command takes none")
        if isinstance(task, Mapping):
            spec = dict(task)
        elif isinstance(task, Sequence) and not isinstance(task, str):
            spec = {"command": [str(a) for a in task]}
        else:
            raise TypeError("submit takes a function, a task spec (a dict) or a command (a list of strings)")
        answer = self._submit("/v1/tasks", spec)
        return Future(self, int(answer["first"]), function=False)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> List[Future]:
        """Runs ``fn`` on every element (of several iterables zipped, like the built-in
        ``map``) as one job of function tasks submitted at once; returns their futures
        in order."""
        calls = list(zip(*iterables))
        if not calls:
            return []
        tasks = [self._function_spec(fn, tuple(call), {})[0] for call in calls]
        name = self.options.name or _name_of(fn)
        answer = self._submit("/v1/jobs", {"name": name, "tasks": tasks})
        first = int(answer["first"])
        return [Future(self, first + i, function=True) for i in range(int(answer["count"]))]

    def submit_job(self, job: Mapping[str, Any]) -> List[Future]:
        """Submits a job as ``POST /v1/jobs`` takes it; futures of its tasks (command tasks)."""
        answer = self._submit("/v1/jobs", dict(job))
        first = int(answer["first"])
        return [Future(self, first + i, function=False) for i in range(int(answer["count"]))]

    def _function_spec(
        self, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Tuple[Dict[str, Any], List[int]]:
        deps: List[int] = []
        args = _with_refs(args, deps, self)
        kwargs = _with_refs(dict(kwargs), deps, self)
        text = payload.serialize_call(fn, args, kwargs)
        opts = self.options
        python = opts.python or os.environ.get("DROVER_PYTHON") or "python3"
        env = dict(opts.env)
        env.update(payload.payload_env(text))
        spec: Dict[str, Any] = {
            "name": opts.name or _name_of(fn),
            "command": [python, "-m", "drover.runner"],
            "env": env,
            "resources": {"cpu_milli": max(1, round(opts.cpus * 1000)), "memory_bytes": int(opts.memory)},
            "labels": {"drover.sdk": "python", **dict(opts.labels)},
        }
        if deps:
            spec["after"] = deps
        if opts.timeout is not None:
            spec["max_runtime_ms"] = max(1, round(opts.timeout * 1000))
        if opts.retries:
            spec["retry"] = {"max_attempts": 1 + int(opts.retries)}
        if opts.priority:
            spec["priority"] = int(opts.priority)
        return spec, deps

    def get(self, task: TaskRef) -> Dict[str, Any]:
        """A task as ``GET /v1/tasks/{task}`` shows it: state, reason, attempts, result."""
        return self._request("GET", f"/v1/tasks/{_ref(task)}").json()

    @overload
    def wait(self, task: TaskRef, timeout: Optional[float] = None) -> Dict[str, Any]: ...

    @overload
    def wait(
        self, task: Union[List[TaskRef], Tuple[TaskRef, ...]], timeout: Optional[float] = None
    ) -> List[Dict[str, Any]]: ...

    def wait(self, task: Any, timeout: Optional[float] = None) -> Any:
        """Waits until the task (or every task of a list) has ended; returns it (them) as
        :meth:`get` does. Raises :class:`drover.Timeout` after ``timeout`` seconds."""
        single = not isinstance(task, (list, tuple))
        refs = [task] if single else list(task)
        deadline = None if timeout is None else time.monotonic() + timeout
        infos: Dict[int, Dict[str, Any]] = {}
        pause = 0.02
        ids = [_ref(r) for r in refs]
        # Many tasks by id: their states from the task list, a page per 1000 ids, and
        # each task read once, when it has ended (not one request per task per round).
        by_list = len(ids) > 3 and all(isinstance(i, int) for i in ids)
        while True:
            states = self._states([int(i) for i in ids]) if by_list else {}
            for i, ref in enumerate(refs):
                if i in infos:
                    continue
                listed = states.get(int(ids[i])) if by_list else None
                if listed is not None and listed not in FINAL_STATES:
                    continue
                info = self.get(ref)
                if info.get("state") in FINAL_STATES:
                    infos[i] = info
            if len(infos) == len(refs):
                ordered = [infos[i] for i in range(len(refs))]
                return ordered[0] if single else ordered
            if deadline is not None and time.monotonic() >= deadline:
                left = [str(_ref(refs[i])) for i in range(len(refs)) if i not in infos]
                raise Timeout(f"tasks {', '.join(left)} did not end within {timeout} s")
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 1.5, 0.5)

    def _states(self, ids: List[int]) -> Dict[int, str]:
        """The states of the tasks ``ids`` as the task list shows them (a task missing
        from it, e.g. retired, is left out)."""
        wanted, last = set(ids), max(ids)
        states: Dict[int, str] = {}
        cursor: Optional[str] = str(min(ids) - 1)
        while cursor is not None:
            page = self._request("GET", "/v1/tasks", params={"cursor": cursor, "limit": 1000}).json()
            for t in page["tasks"]:
                if t["id"] > last:
                    return states
                if t["id"] in wanted:
                    states[t["id"]] = t["state"]
            cursor = page.get("next_cursor")
        return states

    def cancel(self, task: TaskRef) -> int:
        """Cancels a task (or every element of an array key); how many were cancelled."""
        return int(self._request("POST", f"/v1/tasks/{_ref(task)}/cancel").json()["cancelled"])

    def logs_bytes(self, task: TaskRef, stream: str = "stdout", attempt: Optional[int] = None) -> bytes:
        """A task's whole output stream (``stdout`` or ``stderr``) as stored, of its latest
        attempt or of ``attempt``."""
        params: Dict[str, Any] = {"stream": stream}
        if attempt is not None:
            params["attempt"] = attempt
        chunks: List[bytes] = []
        offset = 0
        while True:
            params["offset"] = offset
            r = self._request("GET", f"/v1/tasks/{_ref(task)}/output", params=params)
            chunks.append(r.content)
            length = int(r.headers.get("x-drover-output-length", "0"))
            offset = int(r.headers.get("x-drover-next-offset", str(offset + len(r.content))))
            if not r.content or offset >= length:
                return b"".join(chunks)

    def logs(self, task: TaskRef, stream: str = "stdout", attempt: Optional[int] = None) -> str:
        """:meth:`logs_bytes` as text (bytes that are not UTF-8 become U+FFFD)."""
        return self.logs_bytes(task, stream, attempt).decode("utf-8", errors="replace")

    def events(
        self,
        *,
        task: Optional[TaskRef] = None,
        job: Optional[int] = None,
        worker: Optional[str] = None,
        type: Optional[str] = None,
        since: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[Dict[str, Any]]:
        """The cluster's events, live (``GET /v1/events``): dicts with ``event`` (``open``,
        ``task``, ``worker``, ``job``, ``policy``, ``leader``, ``reset``), ``id`` and ``data``
        (the event, parsed). Runs until the caller stops iterating; ``timeout`` bounds the
        wait for each next event."""
        params = {k: v for k, v in {"job": job, "worker": worker, "type": type, "since": since}.items() if v is not None}
        if task is not None:
            params["task"] = str(_ref(task, quote=False))
        with self._session.get(
            self.url + "/v1/events", params=params, stream=True, timeout=(self.request_timeout, timeout),
            verify=self._verify,
        ) as response:
            if response.status_code >= 400:
                raise _api_error(response)
            name: str = "message"
            ident: Optional[str] = None
            data: List[str] = []
            for raw in response.iter_lines(decode_unicode=True):
                if raw is None:
                    continue
                if raw == "":
                    if data:
                        text = "\n".join(data)
                        try:
                            parsed: Any = json.loads(text)
                        except ValueError:
                            parsed = text
                        yield {"event": name, "id": ident, "data": parsed}
                    name, ident, data = "message", None, []
                elif raw.startswith(":"):
                    continue
                else:
                    key, _, value = raw.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "event":
                        name = value
                    elif key == "id":
                        ident = value
                    elif key == "data":
                        data.append(value)

    def cluster(self) -> Dict[str, Any]:
        """The cluster at a glance (``GET /v1/cluster``)."""
        return self._request("GET", "/v1/cluster").json()

    def workers(self) -> List[Dict[str, Any]]:
        """Every worker (``GET /v1/workers``)."""
        return self._request("GET", "/v1/workers").json()

    def gather(self, *futures: Union[Future, Iterable[Future]], timeout: Optional[float] = None,
               return_exceptions: bool = False) -> List[Any]:
        """:func:`drover.gather`."""
        return gather(*futures, timeout=timeout, return_exceptions=return_exceptions)

    def close(self) -> None:
        """Closes the connection pool."""
        self._session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ref(task: TaskRef, quote: bool = True) -> Union[int, str]:
    if isinstance(task, Future):
        return task.task_id
    if isinstance(task, bool):
        raise TypeError("a task is an id, a key or a Future")
    if isinstance(task, int):
        return task
    return urllib.parse.quote(str(task), safe="") if quote else str(task)


def _name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "python")


def _with_refs(value: Any, deps: List[int], client: Client) -> Any:
    """``value`` with every :class:`Future` in it replaced by a reference to a dependency,
    whose id is added to ``deps`` (once)."""
    if isinstance(value, Future):
        if not value.function:
            raise TypeError(f"task {value.task_id} is a command task: only function tasks' values can be passed")
        if value.client.url != client.url:
            raise ValueError(f"task {value.task_id} belongs to another server")
        if value.task_id not in deps:
            deps.append(value.task_id)
        return payload.DependencyRef(deps.index(value.task_id))
    if isinstance(value, list):
        return [_with_refs(v, deps, client) for v in value]
    if isinstance(value, tuple):
        return tuple(_with_refs(v, deps, client) for v in value)
    if isinstance(value, dict):
        return {k: _with_refs(v, deps, client) for k, v in value.items()}
    return value


def _api_error(response: requests.Response) -> ApiError:
    try:
        err = response.json()["error"]
        return ApiError(response.status_code, str(err.get("code", "")), str(err.get("message", "")), err.get("field"))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:500] or response.reason)
