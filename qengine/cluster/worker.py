"""Running one task: resolve its function, call it, capture the result or the error.

The same code runs inside a pool worker and, in sync mode, in the caller.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..errors import TaskTimeout
from ..signals import SENDER, pre_execute
from ..signing import fast_dumps as dumps  # the store's pickler, without loading the store
from ..task import Outcome, TaskMessage

__all__ = ["execute", "resolve", "rss_kb"]


@lru_cache(maxsize=1024)
def _import_path(path: str) -> Callable[..., Any]:
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only a missing prefix means "try a shorter module name"; an import
            # error raised inside an existing module is the user's to see.
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue
            raise
        for attr in parts[cut:]:
            target = getattr(target, attr)
        if not callable(target):
            raise TypeError(f"{path!r} is not callable")
        return target  # type: ignore[no-any-return]
    raise ModuleNotFoundError(f"No module named {parts[0]!r}", name=parts[0])


def resolve(func: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable a task names: the callable itself or the object at a dotted path."""
    if isinstance(func, str):
        return _import_path(func)
    return func


def rss_kb() -> int:
    """This process's resident memory in kilobytes (0 where it cannot be read)."""
    try:
        with open(f"/proc/{os.getpid()}/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise TaskTimeout


@contextmanager
def _soft_timeout(seconds: float | None) -> Iterator[None]:
    """Raise ``TaskTimeout`` inside the task after ``seconds`` (main thread of a process only).

    Elsewhere, and for code stuck in C that never returns to the interpreter,
    the cluster's guard kills the worker instead (the hard timeout).
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(exc: BaseException) -> str:
    """``"ValueError: message"``, even when the exception's ``__str__`` fails.

    The exception is the task's (or its result's ``__reduce__``'s): none of its methods
    may keep the task's outcome from being written.
    """
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    return f"{type(exc).__name__}: {message}"


def _error_text(exc: BaseException) -> str:
    try:
        trace = "".join(traceback.format_exception(exc))
    except Exception:  # format_exception guards __str__, not every method it calls
        trace = ""
    return f"{_describe(exc)}\n\n{trace}"


def _result_blob(value: Any) -> tuple[bytes, bool]:
    """The pickled result and True, or a pickled explanation of why it cannot be, and False.

    The blob is unpickled once here too: a result that pickles but cannot be read back
    (a ``__reduce__`` that makes a failing call) would be stored as a success nobody can
    fetch, and would break every hook and cache that reads it.
    """
    try:
        blob = dumps(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return dumps(f"the task's result could not be pickled: {_describe(exc)}"), False
    try:
        pickle.loads(blob)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return dumps(f"the task's result could not be unpickled: {_describe(exc)}"), False
    return blob, True


def execute(message: TaskMessage, *, soft_timeout: bool = True, measure: bool = True) -> Outcome:
    """Run the task and return its outcome; never raises for the task's own errors.

    The result is pickled (and loaded back) here, so a result that cannot
    make the trip becomes a failure of this task instead of a crash further
    down the line. ``measure=False`` skips reading the process's memory (the
    caller does it once per batch).
    """
    started = datetime.now(UTC)
    timed_out = False
    try:
        func = resolve(message.func)
        pre_execute.send(SENDER, func=func, task=message)
        with _soft_timeout(message.timeout if soft_timeout else None):
            value: Any = func(*message.args, **message.kwargs)
        success = True
    except TaskTimeout:
        value = f"TaskTimeout: the task timed out after {message.timeout} seconds"
        success = False
        timed_out = True
    except KeyboardInterrupt:
        raise  # Ctrl+C in sync mode belongs to the caller (workers ignore SIGINT)
    except BaseException as exc:  # the task's own error is its result, SystemExit included
        value = _error_text(exc)
        success = False
    blob, pickled = _result_blob(value)
    success = success and pickled
    return Outcome(
        message=message,
        success=success,
        result_blob=blob,
        started=started,
        stopped=datetime.now(UTC),
        pid=os.getpid(),
        rss_kb=rss_kb() if measure else 0,
        timed_out=timed_out,
    )
