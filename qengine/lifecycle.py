"""Hooks a framework hangs around the engine's threads and tasks, for its own connections.

Kept apart from ``db`` so that a worker process, which runs these around
every task, does not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "between_batches",
    "close_thread_connections",
    "register_connection_hooks",
    "thread_connections",
]

_batch_hooks: list[Callable[[], None]] = []
_exit_hooks: list[Callable[[], None]] = []


def register_connection_hooks(
    *, between_batches: Callable[[], None], at_thread_exit: Callable[[], None]
) -> None:
    """Let a framework tend its own connections in the engine's threads and workers.

    qdjango closes stale Django connections at the points ``between_batches``
    names (around each task in a worker; when a cluster thread's run of work
    ends, or after an error), as Django's request cycle does around a
    request, and closes a thread's connections when the thread ends (they
    are the thread's own and would otherwise stay open until collected).
    """
    _batch_hooks.append(between_batches)
    _exit_hooks.append(at_thread_exit)


def between_batches() -> None:
    """Called by workers around each task, and by cluster threads when a run of work ends.

    A thread that is busy (a backlog of results, a stream of deliveries) keeps
    its connection from batch to batch: closing it after every batch, as a
    per-request connection (Django's ``CONN_MAX_AGE = 0``) would be, cost a
    quarter of a PostgreSQL drain in reconnects. It is tended when the run
    ends and after every error (a broken connection is dropped then); a
    thread that only polls (the scheduler, an idle pusher) keeps one
    connection and drops it after an error; so does the guard.
    """
    for hook in _batch_hooks:
        hook()


@contextmanager
def thread_connections() -> Iterator[None]:
    """Wrap a thread's loop so that what it opened is closed when it ends."""
    try:
        yield
    finally:
        close_thread_connections()


def close_thread_connections() -> None:
    """Close what the framework opened in this thread: at its end, or before a fork."""
    for hook in _exit_hooks:
        hook()
