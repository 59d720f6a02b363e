"""Task functions of the django.tasks backend tests, decorated with ``@task``.

Import this module only while ``TASKS`` names ``qdjango.backend.QEngineBackend``
(``test_backend.py``'s ``tasks`` fixture, ``backend_settings`` in a cluster):
``@task`` builds each task with the class of the backend configured then.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import django

if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, task
else:
    from django_tasks import TaskContext, task


class BrokenError(Exception):
    """A failure of this module's own, whose class path the result must name."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return a, b


@task
def options_as_keywords(**kwargs: Any) -> dict[str, Any]:
    """Takes keywords that ``async_task`` would otherwise keep as its own options."""
    return kwargs


@task
def fail(message: str) -> None:
    raise BrokenError(message)


@task
def divide(a: int, b: int) -> float:
    return a / b


@task
def returns_a_set() -> set[int]:
    return {1}


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
def wait_for_file(path: str, timeout_s: float = 30) -> str:
    """Hold a worker until the test creates ``path``: the task is then surely running."""
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout_s}s")
        time.sleep(0.05)
    return "released"


def plain(a: int) -> int:
    """Not decorated: a ``Task`` built around it elsewhere is not this module's name."""
    return a


async def coroutine(a: int) -> int:
    return a
