"""Hooks a framework hangs around the engine's threads and tasks, for its own connections.

Kept apart from ``db`` so that a worker process, which runs these around
every task, does not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["between_batches", "register_connection_hooks", "thread_connections"]

_batch_hooks: list[Callable[[], None]] = []
_exit_hooks: list[Callable[[], None]] = []


def register_connection_hooks(
    *, between_batches: Callable[[], None], at_thread_exit: Callable[[], None]
) -> None:
    """Let a framework tend its own connections in the engine's threads and workers.

    qdjango closes stale Django connections around each batch and each
    task, as Django's request cycle does around a request, and closes a
    thread's connections when the thread ends (its connections are the
    thread's own and would otherwise stay open until collected).
    """
    _batch_hooks.append(between_batches)
    _exit_hooks.append(at_thread_exit)


def between_batches() -> None:
    """Called by cluster threads between batches and by workers around each task."""
    for hook in _batch_hooks:
        hook()


@contextmanager
def thread_connections() -> Iterator[None]:
    """Wrap a thread's loop so that what it opened is closed when it ends."""
    try:
        yield
    finally:
        for hook in _exit_hooks:
            hook()
