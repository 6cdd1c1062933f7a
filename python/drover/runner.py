"""Runs one Python function task on a worker: ``python3 -m drover.runner``.

Reads the call from the environment (see :mod:`drover.payload`), replaces references to
other tasks by their values (the parents' results, which Drover feeds on stdin in
dependency order), calls the function, and prints one result line on stdout: the
pickled value, or the exception with its traceback. Whatever the function itself
prints, on stdout too, goes to stderr, so that stdout holds the result line alone.
Exit status: 0 when the function returned, 1 when it raised (the task then fails and is
retried if its policy says so), 2 when the call could not even be read.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, List

from . import payload


class DependencyResultError(RuntimeError):
    """A dependency's result could not be read from stdin."""


def _resolve(value: Any, parents: List[Any]) -> Any:
    """``value`` with every :class:`~drover.payload.DependencyRef` in it (also inside lists,
    tuples and dicts) replaced by that parent's value."""
    if isinstance(value, payload.DependencyRef):
        return parents[value.index]
    if isinstance(value, list):
        return [_resolve(v, parents) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, parents) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, parents) for k, v in value.items()}
    return value


def _uses_parents(value: Any) -> bool:
    if isinstance(value, payload.DependencyRef):
        return True
    if isinstance(value, (list, tuple)):
        return any(_uses_parents(v) for v in value)
    if isinstance(value, dict):
        return any(_uses_parents(v) for v in value.values())
    return False


def _parent_values() -> List[Any]:
    lines = payload.split_results(sys.stdin.read())
    values = []
    for i, line in enumerate(lines):
        outcome = payload.parse_line(line)
        if outcome is None:
            raise DependencyResultError(
                f"the result of dependency {i} is not a complete result line: it was probably "
                "larger than the worker's result limit (64 KiB by default); pass large values "
                "through files or storage"
            )
        if not outcome.ok:
            raise DependencyResultError(f"dependency {i} raised: {outcome.error}")
        values.append(outcome.value)
    return values


def main() -> int:
    """Runs the call; returns the exit status."""
    # The result line goes to the real stdout; everything else the task writes there
    # (print, subprocesses) is sent to stderr.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        fn, args, kwargs = payload.deserialize_call(payload.payload_from_env(os.environ))
    except Exception as exc:  # noqa: BLE001 - reported as the task's result
        _write(result_fd, payload.error_line(exc, traceback.format_exc()))
        return 2
    try:
        if _uses_parents(args) or _uses_parents(kwargs):
            parents = _parent_values()
            args = _resolve(args, parents)
            kwargs = _resolve(kwargs, parents)
        value = fn(*args, **kwargs)
        line = payload.ok_line(value)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too
        _write(result_fd, payload.error_line(exc, traceback.format_exc()))
        return 1
    _write(result_fd, line)
    return 0


def _write(fd: int, line: str) -> None:
    data = (line + "\n").encode("utf-8")
    while data:
        n = os.write(fd, data)
        data = data[n:]


if __name__ == "__main__":
    sys.exit(main())
