"""Drover's Python SDK.

>>> from drover import Client
>>> client = Client()                      # the local server, as the CLI finds it
>>> squares = client.map(lambda x: x * x, range(10))
>>> total = client.submit(sum, squares)    # depends on the ten tasks, gets their values
>>> total.result()
285

Function tasks run ``python3 -m drover.runner`` on the workers (see :mod:`drover.runner`):
the workers need this package and cloudpickle for the same Python minor version.
"""

from .client import Client, TaskOptions
from .errors import (
    ApiError,
    ConfigError,
    DependencyFailed,
    DroverError,
    RemoteError,
    RemoteTraceback,
    TaskCancelled,
    TaskFailed,
    Timeout,
)
from .future import Future, gather
from .payload import PayloadTooLarge, serialize_task

__all__ = [
    "ApiError",
    "Client",
    "ConfigError",
    "DependencyFailed",
    "DroverError",
    "Future",
    "PayloadTooLarge",
    "RemoteError",
    "RemoteTraceback",
    "TaskCancelled",
    "TaskFailed",
    "TaskOptions",
    "Timeout",
    "gather",
    "serialize_task",
]
__version__ = "0.1.0"
