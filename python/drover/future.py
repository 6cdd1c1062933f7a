"""Futures of Drover tasks: wait for a task and read its value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Union

from . import payload
from .errors import DependencyFailed, RemoteError, RemoteTraceback, TaskCancelled, TaskFailed

if TYPE_CHECKING:
    from .client import Client

#: Lines of a failed task's stderr quoted in its error.
STDERR_TAIL_LINES = 20


class Future:
    """A submitted task. ``result()`` waits for it to end and gives its value: for a
    function task the function's return value (or re-raises its exception, with the
    remote traceback as ``__cause__``); for a command task its result text (the start
    of its stdout). Passing the future of a function task as an argument of another
    makes that task depend on it and receive the value."""

    def __init__(self, client: "Client", task_id: int, function: bool) -> None:
        self.client = client
        self.task_id = task_id
        #: Whether the task runs a Python function (else a command).
        self.function = function
        self._info: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        state = self._info["state"] if self._info else "unknown"
        kind = "function" if self.function else "command"
        return f"<drover.Future task {self.task_id} ({kind}) {state}>"

    def info(self) -> Dict[str, Any]:
        """The task as the API shows it now (``GET /v1/tasks/{id}``)."""
        if self._info is None or not _final(self._info):
            self._info = self.client.get(self.task_id)
        return self._info

    def done(self) -> bool:
        """Whether the task has ended (succeeded, failed, cancelled, …)."""
        return _final(self.info())

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Waits until the task ends; returns it as the API shows it."""
        if self._info is None or not _final(self._info):
            self._info = self.client.wait(self.task_id, timeout=timeout)
        return self._info

    def cancel(self) -> bool:
        """Cancels the task; ``True`` if it was still to end."""
        return self.client.cancel(self.task_id) > 0

    def result(self, timeout: Optional[float] = None) -> Any:
        """Waits for the task and returns its value, or raises what ended it."""
        info = self.wait(timeout)
        if not self.function:
            if info["state"] == "succeeded":
                return info.get("result") or ""
            raise self._failure(info)
        text = info.get("result") or ""
        outcome = payload.parse_line(text)
        if outcome is None and info["state"] == "succeeded":
            # A value larger than the worker's result limit: the whole line is in stdout.
            outcome = payload.parse_line(self.client.logs(self.task_id))
        if outcome is not None and outcome.ok and info["state"] == "succeeded":
            return outcome.value
        if outcome is not None and not outcome.ok:
            if outcome.exception is not None:
                raise outcome.exception from RemoteTraceback(outcome.traceback)
            raise RemoteError(self.task_id, outcome.error, outcome.traceback)
        raise self._failure(info)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """What :meth:`result` would raise, or ``None`` if it would return."""
        try:
            self.result(timeout)
        except Exception as exc:  # noqa: BLE001 - handing it over is the point
            return exc
        return None

    def _failure(self, info: Dict[str, Any]) -> TaskFailed:
        state = info["state"]
        if state == "cancelled":
            return TaskCancelled(self.task_id, state, "cancelled", info)
        if state == "dependency_failed":
            return DependencyFailed(
                self.task_id, state, "a task it depends on did not succeed " f"(deps {info.get('deps')})", info
            )
        why = _outcome_text(info)
        try:
            stderr = self.client.logs(self.task_id, stream="stderr")
        except Exception:  # noqa: BLE001 - the state says enough without it
            stderr = ""
        tail = "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
        if tail:
            why += f"; its stderr ends:\n{tail}"
        return TaskFailed(self.task_id, state, why, info)


def _final(info: Dict[str, Any]) -> bool:
    return info.get("state") in FINAL_STATES


FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled", "dependency_failed"})


def _outcome_text(info: Dict[str, Any]) -> str:
    outcome = info.get("outcome")
    if isinstance(outcome, dict):
        kind = outcome.get("kind", "")
        rest = ", ".join(f"{k} {v}" for k, v in outcome.items() if k != "kind")
        return f"{kind} {rest}".strip()
    return str(info.get("reason") or info["state"])


def gather(*futures: Union[Future, Iterable[Future]], timeout: Optional[float] = None,
           return_exceptions: bool = False) -> List[Any]:
    """The values of ``futures`` (given one by one or as one iterable), in order. With
    ``return_exceptions``, an exception takes the place of a value instead of being
    raised. ``timeout`` bounds the whole wait."""
    flat: List[Future] = []
    for f in futures:
        if isinstance(f, Future):
            flat.append(f)
        else:
            flat.extend(f)
    if not flat:
        return []
    # One wait for all of them (one client's polling loop), then read each value.
    by_client: Dict[int, List[Future]] = {}
    for f in flat:
        by_client.setdefault(id(f.client), []).append(f)
    for group in by_client.values():
        infos = group[0].client.wait([f.task_id for f in group], timeout=timeout)
        for f, info in zip(group, infos):
            f._info = info
    values: List[Any] = []
    for f in flat:
        try:
            values.append(f.result())
        except Exception as exc:  # noqa: BLE001 - returned when asked to
            if not return_exceptions:
                raise
            values.append(exc)
    return values
