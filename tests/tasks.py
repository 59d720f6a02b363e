"""Importable task functions for the suite: clusters resolve them by dotted path."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

HOOK_LOG: list[Any] = []


def add(a: int, b: int) -> int:
    return a + b


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def record_hook(task: Any) -> None:
    """A hook that remembers the task it was given (sync mode runs it in this process)."""
    HOOK_LOG.append(task)


def failing_hook(task: Any) -> None:
    raise RuntimeError("hook is broken")


def unpicklable_result() -> Any:
    return Unpicklable()


def write_file(path: str, text: str) -> str:
    """Leaves a trace on disk, for tests that run tasks in other processes."""
    Path(path).write_text(text)
    return text


def pid() -> int:
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def allocate(megabytes: int) -> int:
    """Keeps memory alive in the worker, for max_rss tests."""
    global _hoard
    _hoard = bytearray(megabytes * 1024 * 1024)
    return len(_hoard)


_hoard: bytearray | None = None


def stubborn_sleep(seconds: float) -> str:
    """Ignores the soft timeout: only a hard kill stops it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(BaseException):  # swallowing TaskTimeout is the point
            time.sleep(0.05)
    return "survived"


def kill_self() -> None:
    os.kill(os.getpid(), 9)


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable refuses to be pickled")


def imported(module: str) -> bool:
    """Whether this worker had imported ``module`` before this task ran."""
    import sys

    return module in sys.modules


def frozen_objects() -> int:
    """How many objects this worker's collector no longer traverses (``gc.freeze``)."""
    import gc

    return gc.get_freeze_count()


def affinity() -> tuple[int, list[int]]:
    return os.getpid(), sorted(os.sched_getaffinity(0))


def pid_file_then_sleep(path: str, seconds: float) -> int:
    """Writes this worker's pid, then sleeps: the test kills the worker meanwhile."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()
