"""How a Python call travels to a worker, and how its outcome travels back.

A call is ``cloudpickle.dumps({"v": 1, "fn": fn, "args": args, "kwargs": kwargs})``,
base64-encoded, carried in the task's environment (``DROVERPY_PAYLOAD``, continued in
``DROVERPY_PAYLOAD_1``, ``_2``, … when longer than one environment value may be). An
argument that is the future of another task travels as a :class:`DependencyRef`: the task
depends on that one, and the runner replaces the reference by the value read from the
parents' results on its stdin, which Drover feeds in dependency order.

The outcome is one JSON line on the task's stdout (its *result*)::

    {"drover_python": 1, "ok": true, "pickle": "<base64>", "json": 7, "repr": "7"}
    {"drover_python": 1, "ok": false, "pickle": "<base64 exception>",
     "error": "ZeroDivisionError: division by zero", "traceback": "Traceback ..."}

``json`` is there only when the value is small and JSON can hold it (what
``GET /get_results`` shows); ``pickle`` is what the SDK reads.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import cloudpickle

#: The environment variable that carries a call to the runner (its first part).
PAYLOAD_ENV = "DROVERPY_PAYLOAD"
#: Bytes of one environment value a server takes by default (``max_string_bytes``).
ENV_VALUE_BYTES = 64 * 1024
#: The largest encoded call: four environment values' worth, kept under the server's
#: default bound on a task's whole environment (256 KiB, names included) with room for
#: a few variables of the caller's own.
MAX_PAYLOAD_BYTES = 240 * 1024
#: The marker that tells a runner's result line from other output.
RESULT_MARKER = "drover_python"
#: ``json`` is added to a result line only when its text is at most this long.
MAX_JSON_BYTES = 4 * 1024
#: ``repr`` of the value, cut to this many characters.
MAX_REPR_CHARS = 200


class PayloadTooLarge(ValueError):
    """The serialized call is larger than a task's environment can carry."""


@dataclass(frozen=True)
class DependencyRef:
    """Stands for the value of the ``index``-th dependency of the task (in ``after`` order)."""

    index: int


def serialize_call(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The base64 text of a call of ``fn(*args, **kwargs)``; functions of the caller's own
    modules are pickled by value, so the worker needs only the packages they import."""
    _pickle_by_value(fn)
    data = cloudpickle.dumps({"v": 1, "fn": fn, "args": tuple(args), "kwargs": dict(kwargs)})
    text = base64.b64encode(data).decode("ascii")
    if len(text) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the serialized call is {len(text)} bytes; a task carries at most {MAX_PAYLOAD_BYTES} "
            "(pass large data through files or storage, or as the result of another task)"
        )
    return text


def serialize_task(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """A call of ``fn(*args, **kwargs)`` serialized for ``POST /submit_task`` (the DistTask
    route): at most 64 KiB, one environment value."""
    text = serialize_call(fn, args, kwargs)
    if len(text) > ENV_VALUE_BYTES:
        raise PayloadTooLarge(
            f"the serialized task is {len(text)} bytes; POST /submit_task takes at most "
            f"{ENV_VALUE_BYTES} (Client.submit takes up to {MAX_PAYLOAD_BYTES})"
        )
    return text


def payload_env(text: str) -> Dict[str, str]:
    """The environment variables that carry ``text`` to the runner."""
    parts = [text[i : i + ENV_VALUE_BYTES] for i in range(0, len(text), ENV_VALUE_BYTES)] or [""]
    env = {PAYLOAD_ENV: parts[0]}
    for i, part in enumerate(parts[1:], start=1):
        env[f"{PAYLOAD_ENV}_{i}"] = part
    return env


def payload_from_env(environ: Mapping[str, str]) -> str:
    """The text :func:`payload_env` spread over ``environ``."""
    if PAYLOAD_ENV not in environ:
        raise LookupError(f"{PAYLOAD_ENV} is not set: this is not a Drover function task")
    parts = [environ[PAYLOAD_ENV]]
    i = 1
    while f"{PAYLOAD_ENV}_{i}" in environ:
        parts.append(environ[f"{PAYLOAD_ENV}_{i}"])
        i += 1
    return "".join(parts)


def deserialize_call(text: str) -> Tuple[Callable[..., Any], Tuple[Any, ...], Dict[str, Any]]:
    """The function and arguments of a serialized call."""
    call = cloudpickle.loads(base64.b64decode(text.encode("ascii"), validate=True))
    if not isinstance(call, dict) or call.get("v") != 1:
        raise ValueError("not a call serialized by this version of drover")
    return call["fn"], tuple(call["args"]), dict(call["kwargs"])


def ok_line(value: Any) -> str:
    """The result line of a call that returned ``value``."""
    line: Dict[str, Any] = {RESULT_MARKER: 1, "ok": True, "pickle": _b64_pickle(value)}
    try:
        text = json.dumps(value, allow_nan=False)
        if len(text) <= MAX_JSON_BYTES and json.loads(text) == value:
            line["json"] = value
    except (TypeError, ValueError):
        pass
    line["repr"] = _short_repr(value)
    return json.dumps(line)


def error_line(exc: BaseException, traceback_text: str) -> str:
    """The result line of a call that raised ``exc``."""
    line: Dict[str, Any] = {RESULT_MARKER: 1, "ok": False}
    try:
        line["pickle"] = _b64_pickle(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be pickled is still reported
        pass
    line["error"] = f"{type(exc).__name__}: {exc}"
    line["traceback"] = traceback_text
    return json.dumps(line)


@dataclass
class Outcome:
    """A result line, read."""

    ok: bool
    value: Any = None
    exception: Optional[BaseException] = None
    error: str = ""
    traceback: str = ""


def parse_line(text: str) -> Optional[Outcome]:
    """The outcome in a task's result, or ``None`` when it holds no complete result line."""
    for line in reversed(text.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or RESULT_MARKER not in data:
            continue
        if data.get("ok"):
            return Outcome(ok=True, value=_unpickle(data["pickle"]))
        exc = None
        if "pickle" in data:
            try:
                exc = _unpickle(data["pickle"])
            except Exception:  # noqa: BLE001 - its class may not exist here; the text stays
                exc = None
        return Outcome(
            ok=False,
            exception=exc if isinstance(exc, BaseException) else None,
            error=str(data.get("error", "")),
            traceback=str(data.get("traceback", "")),
        )
    return None


def split_results(stdin_text: str) -> List[str]:
    """The parents' result lines as Drover feeds them on stdin (one per line)."""
    return [line for line in stdin_text.splitlines() if line.strip()]


def _b64_pickle(value: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(value)).decode("ascii")


def _unpickle(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text.encode("ascii")))


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not lose the value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_REPR_CHARS else text[: MAX_REPR_CHARS - 1] + "…"


def _pickle_by_value(fn: Callable[..., Any]) -> None:
    """Has cloudpickle carry the module of ``fn`` by value when it is the caller's own code
    (not the standard library nor an installed package), which workers cannot import."""
    import sys
    import sysconfig

    name = getattr(fn, "__module__", None)
    if not isinstance(name, str) or name == "__main__" or name.startswith("drover"):
        return
    module = sys.modules.get(name)
    if module is None:
        return
    path = getattr(module, "__file__", None)
    if not path:
        return
    installed = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    if any(path.startswith(p) for p in installed if p):
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except ValueError:
        pass
