"""Finishing tasks: outcomes → store or cache, iter collation, hooks, chains, signals.

``finish`` is what the cluster's monitor thread does with each batch of
outcomes, and what sync mode does with its single one, so a task run inline
is stored exactly as a worker's would be. It lives outside ``cluster/``
because both the API (sync mode) and the cluster use it; queueing the next
link of a chain is handed in (``ContinueChain``), since that is the API's
work and the API is what runs ``finish`` in sync mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .cluster.worker import resolve
from .config import Config
from .errors import StoreError
from .reporters import report_failures
from .runtime import get_reporters, get_store
from .signals import SENDER, post_execute
from .store import ResultStore, dumps, loads, outcome_task
from .task import Outcome, Task, TaskMessage

if TYPE_CHECKING:
    from .brokers.base import Broker

__all__ = [
    "ContinueChain",
    "Notify",
    "cache_timeout",
    "failed_outcome",
    "finish",
    "iter_args_key",
    "report_to_reporters",
]

log = logging.getLogger(__name__)


def iter_args_key(store: ResultStore, iter_id: str) -> str:
    """Cache key of an iter's original argument list, for the collated task."""
    return f"qengine:{store.config.name}:iter:{iter_id}:args"


def cache_timeout(cached: bool | int | None) -> int | None:
    """The cache expiry a task's ``cached`` option asks for: seconds, or None (never)."""
    return None if cached is True or not cached else int(cached)


def _collate(store: ResultStore, group: str, count: int, cached: bool | int | None) -> bool:
    """All parts of an iter are in the cache: save one task holding every result, in order.

    Returns whether it did (the iter's own id can then be waited for).
    """
    parts = store.cached_parts(group)
    if len(parts) < count:
        return False
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
        store.cache_task(collated, cache_timeout(cached))
    else:
        store.save_task(collated)
    store.delete_cached_group(group, tasks=True)
    store.cache.delete(iter_args_key(store, group))
    return True


def _collate_if_complete(store: ResultStore, message: TaskMessage, size: int) -> str | None:
    """Collate the iter ``message`` is part of once its group holds every part; its id if so."""
    group, parts = message.group, message.iter_count
    if not (group and parts) or size < parts:
        return None
    return group if _collate(store, group, parts, message.iter_cached) else None


ContinueChain = Callable[[TaskMessage, "Broker | None"], object]
"""``continue_chain(message, broker)``: queue the rest of ``message``'s chain (its next
link, carrying the links after it) through ``broker``; ``qengine.chains.continue_chain``."""


def _continue_chain(
    message: TaskMessage, broker: Broker | None, continue_chain: ContinueChain | None
) -> None:
    try:
        if continue_chain is None:
            # A caller that runs chained tasks must say how their next links are queued.
            raise RuntimeError("finish() was given no continue_chain")
        continue_chain(message, broker)
    except Exception:
        # The task itself is done and saved: running it again would not bring the rest of
        # the chain back, and raising would keep its batch from being acknowledged.
        log.exception(
            "task %s [%s] finished, but the rest of its chain could not be queued",
            message.name, message.id,
        )  # fmt: skip


def _run_hook(task: Task, hook: object) -> None:
    try:
        resolve(hook)(task)  # type: ignore[arg-type]
    except Exception:
        # A broken hook must not stop the monitor nor undo the task's saved result.
        log.exception("hook %s of task %s [%s] failed", hook, task.name, task.id)


Notify = Callable[..., set[str]]
"""``notify(task_ids, rows)``: wakes callers waiting for task ids, handing over their
committed rows; returns the ids it woke (see ``qengine.notify``)."""


def report_to_reporters(outcomes: Sequence[Outcome], config: Config) -> None:
    """Hand failed outcomes to ``config``'s error reporters (see ``report_failures``)."""
    report_failures(outcomes, config, get_reporters)


def finish(
    outcomes: Sequence[Outcome],
    config: Config,
    *,
    broker: Broker | None = None,
    store: ResultStore | None = None,
    notify: Notify | None = None,
    notify_groups: Callable[[set[str]], None] | None = None,
    report: Callable[[Sequence[Outcome], Config], None] = report_to_reporters,
    continue_chain: ContinueChain | None = None,
) -> None:
    """Save or cache a batch of outcomes, wake waiters, report failures, run hooks and chains.

    Waiters are woken once their rows are committed, with the rows handed
    over (``qengine.notify`` says why), cached results' waiters once they
    are in the cache, group waiters
    (who count or read the group) once the batch is stored or cached, and
    an iter's waiters once it is collated: all before hooks and chains,
    which can take long and do not change the result. Failures are reported
    once everything is stored or cached: a batch retried after a store
    error is not reported twice, and a hook or chain that fails later
    cannot keep them from the error reporters.

    Args:
        broker: where the next link of a chain goes (None: the configuration's).
        continue_chain: queues the next link of a finished task's chain; needed
            when a task of the batch belongs to one (else that is logged as an error).
    """
    store = store or get_store(config)
    signalled = bool(post_execute.receivers)
    # Building the Task unpickles the result: only when something will look at it.
    tasks = [
        outcome_task(o) if signalled or o.message.cached or o.message.hook is not None else None
        for o in outcomes
    ]
    to_store = [outcome for outcome in outcomes if not outcome.message.cached]
    rows: list[dict[str, Any]] = []
    if to_store:
        rows = store.save_outcomes(to_store, prune=False)
        # Only now: a waiter told of a result must find it stored (read-your-writes).
        if notify is not None:
            notify([o.message.id for o in to_store], {row["id"]: row for row in rows})
    cached_ids = _cache_outcomes(store, outcomes, tasks)
    if cached_ids and notify is not None:
        notify(cached_ids, {})
    groups = {o.message.group for o in outcomes if o.message.group}
    if groups and notify_groups is not None:
        notify_groups(groups)
    # save_limit's pruning is a second transaction: after the waiters are woken, not
    # between their commit and their wake-up (it doubled the round trip at the default
    # save_limit). A failure here loses nothing: the next batch prunes again.
    try:
        store.prune_after(rows)
    except StoreError as exc:
        log.warning("could not remove old results beyond save_limit (%s); will retry", exc)
    report(outcomes, config)

    for outcome, task in zip(outcomes, tasks, strict=True):
        message = outcome.message
        if not outcome.success:
            reason = task.result if task is not None else loads(outcome.result_blob)
            log.error("task %s [%s] failed: %s", message.name, message.id, _first_line(reason))
        if task is not None and message.hook is not None:
            _run_hook(task, message.hook)
        if message.chain:
            _continue_chain(message, broker, continue_chain)
        if signalled:
            post_execute.send(SENDER, task=task)


def _cache_outcomes(
    store: ResultStore, outcomes: Sequence[Outcome], tasks: Sequence[Task | None]
) -> list[str]:
    """Put the cached ones in the cache, collating finished iters; return the ids now there."""
    cached_ids: list[str] = []
    for outcome, task in zip(outcomes, tasks, strict=True):
        message = outcome.message
        if not message.cached:
            continue
        assert task is not None
        size = store.cache_task(task, cache_timeout(message.cached), message.iter_index)
        cached_ids.append(message.id)
        collated = _collate_if_complete(store, message, size)
        if collated is not None:
            cached_ids.append(collated)  # the iter's own id now answers
    return cached_ids


def _first_line(value: object) -> str:
    text = str(value)
    return text.split("\n", 1)[0][:200]


def failed_outcome(message: TaskMessage, reason: str, *, timed_out: bool = False) -> Outcome:
    """An outcome written for a task that produced none of its own (given up, timed out)."""
    now = datetime.now(UTC)
    return Outcome(
        message=message,
        success=False,
        result_blob=dumps(reason),
        started=now,
        stopped=now,
        timed_out=timed_out,
    )
