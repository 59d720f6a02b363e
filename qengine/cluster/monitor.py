"""Finishing tasks: outcomes → store or cache, iter collation, hooks, chains, signals.

``finish`` is what the cluster's monitor thread does with each batch of
outcomes, and what sync mode does with its single one, so a task run inline
is stored exactly as a worker's would be.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Config
from ..signals import SENDER, post_execute
from ..store import ResultStore, get_store, loads, outcome_task
from ..task import Outcome, Task
from .worker import resolve

if TYPE_CHECKING:
    from ..brokers.base import Broker

__all__ = ["finish", "iter_args_key"]

log = logging.getLogger(__name__)


def iter_args_key(store: ResultStore, iter_id: str) -> str:
    """Cache key of an iter's original argument list, for the collated task."""
    return f"qengine:{store.config.name}:iter:{iter_id}:args"


def _cache_timeout(cached: bool | int | None) -> int | None:
    return None if cached is True or not cached else int(cached)


def _collate(store: ResultStore, group: str, count: int, cached: bool | int | None) -> None:
    """All parts of an iter are in the cache: save one task holding every result, in order."""
    parts = store.cached_parts(group)
    if len(parts) < count:
        return
    parts.sort(key=lambda p: p[0] or 0)
    tasks = [t for _, t in parts]
    first = tasks[0]
    args_blob = store.cache.get(iter_args_key(store, group))
    collated = Task(
        id=group,
        name=first.name,
        func=first.func,
        args=tuple(loads(args_blob) or ()),
        kwargs=first.kwargs,
        result=[t.result for t in tasks],
        started=min(t.started for t in tasks if t.started),
        stopped=max(t.stopped for t in tasks if t.stopped),
        success=all(t.success for t in tasks),
        attempt_count=max(t.attempt_count for t in tasks),
        cluster=first.cluster,
    )
    if cached:
        store.cache_task(collated, _cache_timeout(cached))
    else:
        store.save_task(collated)
    store.delete_cached_group(group, tasks=True)
    store.cache.delete(iter_args_key(store, group))


def _run_hook(task: Task, hook: object) -> None:
    try:
        resolve(hook)(task)  # type: ignore[arg-type]
    except Exception:
        # A broken hook must not stop the monitor nor undo the task's saved result.
        log.exception("hook %s of task %s [%s] failed", hook, task.name, task.id)


def finish(
    outcomes: Sequence[Outcome],
    config: Config,
    *,
    broker: Broker | None = None,
    store: ResultStore | None = None,
) -> None:
    """Save a batch of outcomes, then run hooks, continue chains and send ``post_execute``."""
    store = store or get_store(config)
    to_store: list[Outcome] = []
    for outcome in outcomes:
        message = outcome.message
        if not message.cached:
            to_store.append(outcome)
    if to_store:
        store.save_outcomes(to_store)

    for outcome in outcomes:
        message = outcome.message
        task = outcome_task(outcome)
        if message.cached:
            size = store.cache_task(task, _cache_timeout(message.cached), message.iter_index)
            if message.iter_count and message.group and size >= message.iter_count:
                _collate(store, message.group, message.iter_count, message.iter_cached)
        if not outcome.success:
            log.error("task %s [%s] failed: %s", message.name, message.id, _first_line(task.result))
        if message.hook is not None:
            _run_hook(task, message.hook)
        if message.chain:
            from ..chains import async_chain

            async_chain(
                list(message.chain),
                group=message.group,
                cached=message.cached,
                sync=message.sync,
                broker=broker,
            )
        post_execute.send(SENDER, task=task)


def _first_line(value: object) -> str:
    text = str(value)
    return text.split("\n", 1)[0][:200]
