"""The `tasks` module of DistTask client scripts (`from tasks import serialize_task`),
here served by Drover's Python SDK: a script written for DistTask runs unchanged from
this directory, with only the URL and an Authorization header added."""

from drover import serialize_task

__all__ = ["serialize_task"]
