"""The errors the SDK raises."""

from __future__ import annotations

from typing import Any, Dict, Optional


class DroverError(Exception):
    """Base class of every error of this package."""


class ConfigError(DroverError):
    """No server URL or token was given nor found on this machine."""


class ApiError(DroverError):
    """The server refused a request: its status and the error body's code, message, field."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")


class TaskFailed(DroverError):
    """A task ended without succeeding and without a Python exception to re-raise: it
    failed, timed out, was killed, or never ran its function (no interpreter, no
    ``drover`` package on the worker)."""

    def __init__(self, task_id: int, state: str, message: str, info: Optional[Dict[str, Any]] = None) -> None:
        self.task_id = task_id
        self.state = state
        self.info = info or {}
        super().__init__(f"task {task_id} ended {state}: {message}")


class TaskCancelled(TaskFailed):
    """The task was cancelled."""


class DependencyFailed(TaskFailed):
    """A task this one depends on did not succeed, so this one never ran."""


class RemoteTraceback(DroverError):
    """The traceback of an exception raised on a worker; the ``__cause__`` of the exception
    that :meth:`drover.Future.result` re-raises."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class RemoteError(DroverError):
    """A function raised on a worker an exception that cannot be rebuilt here (its class
    could not be unpickled); holds its text and traceback."""

    def __init__(self, task_id: int, error: str, traceback: str) -> None:
        self.task_id = task_id
        self.error = error
        self.traceback = traceback
        super().__init__(f"task {task_id} raised {error}")


class Timeout(DroverError, TimeoutError):
    """A wait ran out of time; the task goes on."""
