"""Finishing tasks: outcomes → store or cache, iter collation, hooks, chains, signals.

``finish`` is what the cluster's monitor thread does with each batch of
outcomes, and what sync mode does with its single one, so a task run inline
is stored exactly as a worker's would be.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..config import Config
from ..errors import BrokerError, StoreError
from ..reporters import report_failures
from ..runtime import get_reporters, get_store
from ..signals import SENDER, post_execute
from ..store import ResultStore, dumps, loads, outcome_task
from ..task import Outcome, Task, TaskMessage
from .worker import resolve

if TYPE_CHECKING:
    from ..brokers.base import Broker
    from .cluster import Cluster
    from .state import Held

__all__ = ["Monitor", "failed_outcome", "finish", "iter_args_key"]

log = logging.getLogger(__name__)


def iter_args_key(store: ResultStore, iter_id: str) -> str:
    """Cache key of an iter's original argument list, for the collated task."""
    return f"qengine:{store.config.name}:iter:{iter_id}:args"


def _cache_timeout(cached: bool | int | None) -> int | None:
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
        store.cache_task(collated, _cache_timeout(cached))
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


def _continue_chain(message: TaskMessage, broker: Broker | None) -> None:
    from ..chains import async_chain

    try:
        async_chain(
            list(message.chain or ()),
            group=message.group,
            cached=message.cached,
            sync=message.sync,
            broker=broker,
        )
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
    """
    store = store or get_store(config)
    signalled = bool(post_execute.receivers)
    # Building the Task unpickles the result: only when something will look at it.
    tasks = [
        outcome_task(o) if signalled or o.message.cached or o.message.hook is not None else None
        for o in outcomes
    ]
    to_store = [outcome for outcome in outcomes if not outcome.message.cached]
    if to_store:
        rows = store.save_outcomes(to_store)
        # Only now: a waiter told of a result must find it stored (read-your-writes).
        if notify is not None:
            notify([o.message.id for o in to_store], {row["id"]: row for row in rows})
    cached_ids = _cache_outcomes(store, outcomes, tasks)
    if cached_ids and notify is not None:
        notify(cached_ids, {})
    groups = {o.message.group for o in outcomes if o.message.group}
    if groups and notify_groups is not None:
        notify_groups(groups)
    report(outcomes, config)

    for outcome, task in zip(outcomes, tasks, strict=True):
        message = outcome.message
        if not outcome.success:
            reason = task.result if task is not None else loads(outcome.result_blob)
            log.error("task %s [%s] failed: %s", message.name, message.id, _first_line(reason))
        if task is not None and message.hook is not None:
            _run_hook(task, message.hook)
        if message.chain:
            _continue_chain(message, broker)
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
        size = store.cache_task(task, _cache_timeout(message.cached), message.iter_index)
        cached_ids.append(message.id)
        collated = _collate_if_complete(store, message, size)
        if collated is not None:
            cached_ids.append(collated)  # the iter's own id now answers
    return cached_ids


def _first_line(value: object) -> str:
    text = str(value)
    return text.split("\n", 1)[0][:200]


# -- the monitor thread ---------------------------------------------------------------

RESULT_BATCH = 256
"""Most finished hand-offs saved in one transaction."""


class Monitor:
    """The monitor thread: finished hand-offs → ``finish`` → acknowledgements and counters.

    It receives two kinds of items on ``cluster.results``: ``(seqs, future)``
    from the pool, and ``(None, [(held, outcome), ...])`` made by the cluster
    itself (tasks given up, timed out or whose worker died).
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.thread = threading.Thread(target=self.run, name="qengine-monitor", daemon=True)
        self.done = threading.Event()
        self.unacked: list[tuple[list[str], list[int]]] = []
        self.ack_backoff_s = 0.1
        self.ack_retry_at = 0.0

    def run(self) -> None:
        cluster = self.cluster
        log.info("%s monitoring at %s", cluster.label, threading.get_native_id())
        busy = False
        with lifecycle.thread_connections():
            while not self.done.is_set():
                try:
                    done = self.tick()
                    if busy and not done:
                        # A run of work ended: a whole tick found nothing (see lifecycle).
                        lifecycle.between_batches()
                    busy = bool(done)
                except Exception:
                    # The monitor must outlive any one bad batch: log it and keep going.
                    log.exception("%s monitor error; continuing", cluster.label)
                    lifecycle.between_batches()
        log.info("%s stopped monitoring results", cluster.label)

    def tick(self, wait_s: float = 0.2) -> int:
        """Process everything finished so far (waiting up to ``wait_s`` for the first)."""
        self._retry_acks()
        try:
            first = self.cluster.results.get(timeout=wait_s)
        except queue.Empty:
            return 0
        items = [first]
        while len(items) < RESULT_BATCH:
            try:
                items.append(self.cluster.results.get_nowait())
            except queue.Empty:
                break
        outcomes: list[tuple[Held, Outcome]] = []
        broken: list[int] = []
        for seqs, payload in items:
            if seqs is None:
                outcomes.extend(payload)
            else:
                self._collect(seqs, payload, outcomes, broken)
        if broken:
            self.cluster.report_broken(broken)
        if outcomes:
            self.settle(outcomes)
        return len(outcomes)

    def _collect(
        self,
        seqs: list[int],
        future: Future[Any],
        outcomes: list[tuple[Held, Outcome]],
        broken: list[int],
    ) -> None:
        cluster = self.cluster
        # A replaced pool cancels the hand-offs it had not started. Ask first: exception()
        # raises for a cancelled future, and the whole batch read with it would be dropped.
        if future.cancelled():
            broken.extend(seqs)
            return
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            broken.extend(seqs)
            return
        if error is not None:
            # The hand-off itself failed (not the task): fail its tasks with the reason.
            for seq in seqs:
                held = cluster.holdings.get(seq)
                if held is not None:
                    reason = f"the worker failed: {error!r}"
                    outcomes.append((held, failed_outcome(held.message, reason)))
            return
        for seq, success, blob, started, stopped, pid, rss, timed_out in future.result():
            held = cluster.holdings.get(seq)
            if held is None:
                continue
            cluster.note_worker(pid, rss)
            outcome = Outcome(
                message=held.message, success=success, result_blob=blob, started=started,
                stopped=stopped, pid=pid, rss_kb=rss, timed_out=timed_out,
            )  # fmt: skip
            outcomes.append((held, outcome))

    def settle(self, pairs: list[tuple[Held, Outcome]]) -> None:
        """Save, then acknowledge what is done; failed tasks are left for redelivery."""
        cluster = self.cluster
        config = cluster.config
        try:
            self._save([outcome for _, outcome in pairs])
        except Exception:
            # Not a store outage (those are retried in _save) but something unforeseen, or
            # the store still down at stop. Held, these tasks would have their leases renewed
            # for ever and a stop would wait on them; let go unacknowledged, the broker hands
            # them out again after ``retry``, and a task whose success was saved is then
            # acknowledged without running.
            log.exception(
                "%s: could not finish %d task(s); they will be delivered again",
                cluster.label, len(pairs),
            )  # fmt: skip
            cluster.holdings.release([held.seq for held, _ in pairs])
            return
        acks: list[str] = []
        seqs: list[int] = []
        for held, outcome in pairs:
            message = outcome.message
            seqs.append(held.seq)
            ack_failure = (
                config.ack_failures if message.ack_failure is None else message.ack_failure
            )
            out_of_attempts = bool(config.max_attempts) and (
                message.attempt_count >= config.max_attempts
            )
            if outcome.success or ack_failure or out_of_attempts or held.given_up:
                acks.append(held.delivery.ack_id)
            cluster.count(outcome.success)
        self._acknowledge(acks, seqs)

    def _save(self, outcomes: list[Outcome]) -> None:
        cluster = self.cluster
        delay = 0.2
        while True:
            try:
                finish(
                    outcomes, cluster.config, broker=cluster.broker, store=cluster.store,
                    notify=cluster.notify_done, notify_groups=cluster.notify_groups,
                    report=cluster.reporting.submit,
                )  # fmt: skip
                return
            except StoreError as exc:
                # Keep the results (and the leases) until the store is back; if the cluster
                # must stop first, the unacknowledged packages are delivered again later.
                if self.done.is_set():
                    log.error("%s: result store down while stopping: %s", cluster.label, exc)
                    raise
                log.warning("%s: cannot save results (%s); retrying", cluster.label, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _acknowledge(self, acks: list[str], seqs: list[int]) -> None:
        try:
            if acks:
                self.cluster.broker.acknowledge_many(acks)
        except BrokerError as exc:
            # The tasks stay held (their leases renewed) until the broker is back.
            if not self.unacked:
                log.warning("%s: cannot acknowledge (%s); will retry", self.cluster.label, exc)
            self.unacked.append((acks, seqs))
            self.ack_backoff_s = min(self.ack_backoff_s * 2, 5.0)
            self.ack_retry_at = time.monotonic() + self.ack_backoff_s
            return
        self.ack_backoff_s = 0.1
        self.cluster.holdings.release(seqs)

    def unacked_count(self) -> int:
        return sum(len(seqs) for _, seqs in self.unacked)

    def _retry_acks(self) -> None:
        if not self.unacked or time.monotonic() < self.ack_retry_at:
            return
        pending, self.unacked = self.unacked, []
        for acks, seqs in pending:
            self._acknowledge(acks, seqs)


def failed_outcome(message: TaskMessage, reason: str, *, timed_out: bool = False) -> Outcome:
    """An outcome the cluster writes for a task that produced none of its own."""
    now = datetime.now(UTC)
    return Outcome(
        message=message,
        success=False,
        result_blob=dumps(reason),
        started=now,
        stopped=now,
        timed_out=timed_out,
    )
