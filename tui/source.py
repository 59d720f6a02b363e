"""The monitor's only caller of qengine: reads snapshots and runs actions, off the UI thread.

Its methods may block on the network, so the app calls them from a background
thread. ``poll``, ``task`` and the actions never raise: a failed read leaves
that part of the snapshot empty and names the problem, a failed action says
so in its result. Broker, database and Redis errors of every kind end up
there, and the monitor must outlive all of them. The single reads
(``clusters``, ``queue`` …) do raise; ``poll`` is what guards them.
"""

from __future__ import annotations

import functools
import logging
import pprint
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import qengine
from qengine import queries
from qengine.brokers import Broker, broker_class
from qengine.config import Config, mask_url
from qengine.lifecycle import thread_connections
from qengine.runtime import get_config, new_broker, set_config_file
from qengine.schedules import Schedule
from qengine.status import Stat, summary

from .model import (
    ActionResult,
    ClusterInfo,
    PollRequest,
    QueueInfo,
    ScheduleInfo,
    Snapshot,
    SummaryInfo,
    TaskFilter,
    TaskInfo,
    TaskLine,
)

__all__ = ["BROKER", "STORE", "Source", "SourceError"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BROKER = "Broker"
STORE = "Result store"
_TEXT_LIMIT = 20_000
"""Characters of a value shown in a task's detail; a huge result would only stall the screen."""


class SourceError(Exception):
    """The monitor cannot start: its configuration is invalid."""


def _closes_connections(method: Callable[..., T]) -> Callable[..., T]:
    """Close what a call opened in its thread: each call runs in a short-lived thread.

    Under Django (``manage.py qmonitor``) the store's connections are the
    calling thread's own; left open, every poll would leave one behind.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with thread_connections():
            return method(*args, **kwargs)

    return wrapper


def _part_of(exc: BaseException, default: str) -> str:
    """Which part failed, judged by the error's origin more than by the call that raised it.

    ``summary()`` reads cluster snapshots from Redis and counts from the store,
    so the call alone does not tell which one is down.
    """
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        module = type(error).__module__.split(".")[0]
        if module == "redis" or isinstance(error, qengine.BrokerError):
            return BROKER
        if module == "sqlalchemy" or isinstance(error, qengine.StoreError):
            return STORE
    return default


def _describe(exc: BaseException) -> str:
    """One line of an error for the banner: its first line, not its whole SQL statement."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _text(value: Any) -> str:
    try:
        text = value if isinstance(value, str) else pprint.pformat(value, width=72)
    except Exception as exc:  # a user object's __repr__ may raise anything
        text = f"<{type(value).__name__} that cannot be shown: {exc}>"
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "\n… (cut)"


def _every(item: queries.ScheduleStatus) -> str:
    if item.schedule_type == Schedule.MINUTES:
        return f"{item.minutes} min"
    if item.schedule_type == Schedule.CRON:
        return item.cron or ""
    return ""


class Source:
    """Reads what the monitor shows from a configuration's broker and store.

    Args:
        config: the configuration to watch; default the process's current one.
            Resubmitting goes through ``qengine.resubmit``, which uses the
            current configuration, so pass that one (``qmonitor`` does).
        clock: current time, aware; tests fix it so uptimes and rates stay still.
        rate_minutes: how far back the tasks-per-second sparkline reaches.
        rate_buckets: slices of that window; one sparkline value each.
        list_limit: newest tasks read for each task list.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        rate_minutes: float = 10,
        rate_buckets: int = 60,
        list_limit: int = 200,
    ) -> None:
        self.config = config or get_config()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rate_minutes = rate_minutes
        self.rate_buckets = rate_buckets
        self.list_limit = list_limit
        self._broker: Broker | None = None
        self._broker_lock = threading.Lock()

    @classmethod
    def open(cls, config_file: str | None = None) -> Source:
        """A source of the current configuration, read from ``config_file`` when given.

        Raises:
            SourceError: the file or the configuration is invalid; the message says why.
        """
        try:
            if config_file:
                set_config_file(config_file)
            return cls(get_config())
        except qengine.QEngineError as exc:
            raise SourceError(str(exc)) from exc

    # -- what is watched ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def status_part(self) -> str:
        """Where cluster snapshots live: Redis when the broker is Redis, else the store."""
        return BROKER if broker_class(self.config).publishes_status else STORE

    def describe(self) -> str:
        """Cluster name, broker and store for the title bar, passwords masked."""
        broker = mask_url(self.config.broker_url)
        store = mask_url(self.config.store)
        where = broker if broker == store else f"{broker} · {store}"
        return f"{self.config.name} · {where}"

    def close(self) -> None:
        """Release the broker's connections."""
        with self._broker_lock:
            broker, self._broker = self._broker, None
        if broker is not None:
            try:
                broker.close()
            except Exception as exc:  # closing a dead connection is not worth a crash on exit
                log.debug("closing the broker failed: %s", exc)

    def _get_broker(self) -> Broker:
        # One broker for the monitor's life, its own (closed with the monitor): the queue
        # is measured every second.
        with self._broker_lock:
            if self._broker is None:
                self._broker = new_broker(self.config)
            return self._broker

    # -- reading -----------------------------------------------------------------------

    @_closes_connections
    def poll(self, request: PollRequest) -> Snapshot:
        """Read one snapshot: clusters and queue, and with ``request.full`` everything else."""
        problems: dict[str, str] = {}
        checked: set[str] = set()

        def attempt(part: str, call: Callable[[], T]) -> T | None:
            checked.add(part)
            try:
                return call()
            except Exception as exc:  # a poll reports what failed and goes on (module doc)
                where = _part_of(exc, part)
                checked.add(where)
                problems.setdefault(where, _describe(exc))
                log.debug("monitor could not read %s: %r", where, exc)
                return None

        clusters = attempt(self.status_part, self.clusters)
        queue = attempt(BROKER, self.queue)
        if not request.full:
            return Snapshot(
                clusters=clusters, queue=queue, problems=problems, checked=frozenset(checked)
            )
        labels = attempt(STORE, lambda: queries.task_labels(self.config))
        return Snapshot(
            clusters=clusters,
            queue=queue,
            summary=attempt(STORE, self.summary),
            rate=attempt(STORE, self.rate),
            rate_window_s=self.rate_minutes * 60,
            tasks=attempt(STORE, lambda: self.tasks(request.tasks)),
            failures=attempt(STORE, lambda: self.tasks(request.failures, success=False)),
            schedules=attempt(STORE, self.schedules),
            groups=labels[0] if labels else None,
            funcs=labels[1] if labels else None,
            problems=problems,
            checked=frozenset(checked),
        )

    def clusters(self) -> list[ClusterInfo]:
        """Every cluster whose snapshot has not expired; a silent one is gone within seconds."""
        now = self.clock()
        return [
            ClusterInfo(
                cluster_id=str(stat.cluster_id),
                host=stat.host,
                state=stat.status,
                pool=len(stat.workers),
                task_q=stat.task_q_size,
                result_q=stat.done_q_size,
                reincarnations=stat.reincarnations,
                uptime_s=max(0.0, (now - stat.tob).total_seconds()),
                queue_limit=stat.queue_limit,
                processed=stat.processed,
                failed=stat.failed,
                rss_kb=stat.rss_kb,
                rejected=stat.rejected,
                redeliveries=stat.redeliveries,
            )
            for stat in Stat.get_all(self.config)
        ]

    def queue(self) -> QueueInfo:
        broker = self._get_broker()
        return QueueInfo(queued=broker.queue_size(), in_flight=broker.lock_size())

    def summary(self) -> SummaryInfo:
        return summary(self.config)

    def rate(self) -> list[float]:
        return queries.tasks_per_second(
            self.config, minutes=self.rate_minutes, buckets=self.rate_buckets, now=self.clock()
        )

    def _local(self, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(self.config.zone)

    def tasks(self, where: TaskFilter, *, success: bool | None = None) -> list[TaskLine]:
        """The newest stored tasks (``list_limit`` of them), newest first."""
        found = queries.task_listing(
            self.config, success=success, group=where.group, func=where.func, limit=self.list_limit
        )
        return [
            TaskLine(
                id=task.id,
                name=task.name,
                func=task.func,
                group=task.group,
                success=task.success,
                stopped=self._local(task.stopped),
                time_taken_s=task.time_taken(),
                attempts=task.attempt_count,
            )
            for task in found
        ]

    @_closes_connections
    def task(self, task_id: str) -> TaskInfo | None:
        """One task with its arguments and result; None if it is gone or cannot be read."""
        try:
            task = queries.task_detail(self.config, task_id)
        except Exception as exc:  # the caller shows "cannot be read" rather than crash
            log.debug("monitor could not read task %s: %r", task_id, exc)
            return None
        if task is None:
            return None
        return TaskInfo(
            id=task.id,
            name=task.name,
            func=task.func,
            hook=task.hook,
            group=task.group,
            cluster=task.cluster,
            args=_text(task.args),
            kwargs=_text(task.kwargs),
            result=_text(task.result),
            success=task.success,
            started=self._local(task.started),
            stopped=self._local(task.stopped),
            time_taken_s=task.time_taken(),
            attempts=task.attempt_count,
        )

    def schedules(self) -> list[ScheduleInfo]:
        return [
            ScheduleInfo(
                id=item.id,
                name=item.name,
                func=item.func,
                type_label=item.type_label,
                every=_every(item),
                repeats=item.repeats,
                next_run=self._local(item.next_run),
                cluster=item.cluster,
                last_task=item.last_task,
                last_success=item.last_success,
            )
            for item in queries.schedule_statuses(self.config)
        ]

    # -- acting ------------------------------------------------------------------------

    @_closes_connections
    def _act(self, what: str, call: Callable[[], str]) -> ActionResult:
        try:
            return ActionResult(ok=True, message=call())
        except Exception as exc:  # an action reports its failure instead of raising (module doc)
            log.debug("monitor could not %s: %r", what, exc)
            return ActionResult(ok=False, message=f"Could not {what}: {_describe(exc)}")

    def resubmit(self, task_id: str) -> ActionResult:
        """Queue a stored task again; a failure is removed from the store once queued."""

        def call() -> str:
            new_id = qengine.resubmit(task_id)
            return f"Resubmitted as task {new_id}"

        return self._act("resubmit the task", call)

    def _schedule(self, schedule_id: int) -> Schedule:
        item = Schedule.get(schedule_id, store_url=self.config.store)
        if item is None:
            raise LookupError(f"schedule #{schedule_id} no longer exists")
        return item

    def pause(self, schedule_id: int) -> ActionResult:
        """Stop a schedule from running by setting ``repeats`` to 0, noting the old count."""

        def call() -> str:
            item = self._schedule(schedule_id)
            if item.repeats == 0:
                return f"Schedule {item} is already paused"
            queries.keep_paused_repeats(self.config, schedule_id, item.repeats)
            item.repeats = 0
            item.save(store_url=self.config.store)
            return f"Paused schedule {item}"

        return self._act("pause the schedule", call)

    def resume(self, schedule_id: int) -> ActionResult:
        """Give a paused schedule back the ``repeats`` it had, or -1 (forever) if unknown."""

        def call() -> str:
            item = self._schedule(schedule_id)
            if item.repeats != 0:
                return f"Schedule {item} is not paused"
            kept = queries.paused_repeats(self.config, schedule_id)
            item.repeats = kept if kept else -1
            item.save(store_url=self.config.store)
            queries.forget_paused_repeats(self.config, schedule_id)
            return f"Resumed schedule {item} (repeats {item.repeats})"

        return self._act("resume the schedule", call)

    def run_now(self, schedule_id: int) -> ActionResult:
        """Make a schedule due now; a running cluster's scheduler picks it up within a second."""

        def call() -> str:
            item = self._schedule(schedule_id)
            if item.repeats == 0:
                raise ValueError(f"schedule {item} is paused; resume it first")
            item.next_run = datetime.now(UTC)
            item.save(store_url=self.config.store)
            return f"Schedule {item} is due now"

        return self._act("run the schedule now", call)

    def delete(self, schedule_id: int) -> ActionResult:
        """Remove a schedule (and the monitor's note of it, if paused)."""

        def call() -> str:
            item = self._schedule(schedule_id)
            item.delete(store_url=self.config.store)
            queries.forget_paused_repeats(self.config, schedule_id)
            return f"Deleted schedule {item}"

        return self._act("delete the schedule", call)
