"""Queries a monitor needs that the engine's API lacks: task lists, rates, schedules.

Task lists read no pickled column, and a task's detail unpickles each value on
its own: a monitor may run where the tasks' own classes cannot be imported,
and one such value must not hide the rest.

Everything here reads the store, except the small note ``qmonitor`` keeps in
``q_meta`` of a paused schedule's ``repeats``: pausing sets ``repeats`` to 0
(the scheduler's own meaning of "never runs"), and resuming must give back
the count it had, which the schedule row has no column for. Keeping the note
in the store rather than in the monitor lets another monitor, or the same
one after a restart, resume the schedule correctly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, case, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from .config import Config, mask_url
from .db import MetaRow, ScheduleRow, TaskRow, writing
from .errors import StoreError
from .runtime import get_store
from .schedules import Schedule
from .store import loads

__all__ = [
    "ScheduleStatus",
    "StoredTask",
    "Unreadable",
    "forget_paused_repeats",
    "keep_paused_repeats",
    "paused_repeats",
    "schedule_statuses",
    "task_detail",
    "task_labels",
    "task_listing",
    "tasks_per_second",
]

T = TypeVar("T")

_TYPE_LABELS = dict(Schedule.TYPE)
_PAUSED_KEY = "qmonitor:paused:{}"
_SCHEDULE_COLUMNS = ("id", "name", "func", "schedule_type", "minutes", "cron", "repeats",
                     "next_run", "cluster", "task")  # fmt: skip


@contextmanager
def _reading(config: Config) -> Iterator[Engine]:
    """The store's engine, with database errors turned into ``StoreError`` naming the URL."""
    try:
        yield get_store(config).engine
    except SQLAlchemyError as exc:
        raise StoreError(f"result store {mask_url(config.store)} failed: {exc}") from exc


def _run(config: Config, work: Callable[[Engine], T]) -> T:
    with _reading(config) as engine:
        return work(engine)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Stands for a stored value that cannot be unpickled in this process."""

    reason: str

    def __repr__(self) -> str:
        return f"<cannot be read here: {self.reason}>"


def _load(blob: bytes | None) -> Any:
    try:
        return loads(blob)
    except Exception as exc:  # unpickling raises whatever the pickled class's import raises
        return Unreadable(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTask:
    """A row of ``q_task``; ``args``, ``kwargs`` and ``result`` are read by ``task_detail`` only."""

    id: str
    name: str
    func: str
    hook: str | None
    group: str | None
    started: datetime
    """When the task was enqueued."""
    stopped: datetime
    success: bool
    attempt_count: int
    cluster: str | None
    args: Any = None
    kwargs: Any = None
    result: Any = None
    """The return value, or the traceback text of a failure; ``Unreadable`` if it cannot be."""

    def time_taken(self) -> float:
        """Seconds between enqueueing and finishing, as ``Task.time_taken``."""
        return (self.stopped - self.started).total_seconds()


_LISTED = ("id", "name", "func", "hook", "group", "started", "stopped", "success",
           "attempt_count", "cluster")  # fmt: skip


def task_listing(
    config: Config,
    *,
    success: bool | None = None,
    group: str | None = None,
    func: str | None = None,
    limit: int = 100,
) -> list[StoredTask]:
    """Stored tasks, newest first, optionally of one outcome, group and function.

    ``group`` and ``func`` match values that start with them, so a filter can be
    typed a piece at a time (``myapp.tasks.`` lists the module's functions).

    Raises:
        StoreError: the store cannot be read.
    """
    stmt = select(*(getattr(TaskRow, name) for name in _LISTED))
    if success is not None:
        stmt = stmt.where(TaskRow.success.is_(success))
    if group is not None:
        stmt = stmt.where(TaskRow.group.startswith(group, autoescape=True))
    if func is not None:
        stmt = stmt.where(TaskRow.func.startswith(func, autoescape=True))
    stmt = stmt.order_by(TaskRow.stopped.desc(), TaskRow.id).limit(limit)

    def work(engine: Engine) -> list[StoredTask]:
        with engine.connect() as conn:
            return [StoredTask(**row._mapping) for row in conn.execute(stmt)]

    return _run(config, work)


def task_detail(config: Config, task_id: str) -> StoredTask | None:
    """The stored task with this id, its values unpickled one by one; None if gone.

    Raises:
        StoreError: the store cannot be read.
    """
    stmt = select(TaskRow.__table__).where(TaskRow.id == task_id)

    def work(engine: Engine) -> StoredTask | None:
        with engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        values = row._mapping
        return StoredTask(
            **{name: values[name] for name in _LISTED},
            args=_load(values["args"]),
            kwargs=_load(values["kwargs"]),
            result=_load(values["result"]),
        )

    return _run(config, work)


def tasks_per_second(
    config: Config, *, minutes: float = 10, buckets: int = 60, now: datetime | None = None
) -> list[float]:
    """Tasks finished per second in ``buckets`` equal slices of the last ``minutes``.

    Oldest slice first. One query counts every slice at once (a ``CASE`` per
    slice boundary), so the cost does not grow with the number of slices and
    the SQL is the same on every database. Only stored tasks count: a
    ``save_limit`` that drops successes lowers the figures, as it does qinfo's.

    Raises:
        StoreError: the store cannot be read.
    """
    if buckets < 1 or minutes <= 0:
        raise ValueError("tasks_per_second needs buckets >= 1 and minutes > 0")
    now = now or datetime.now(UTC)
    step = timedelta(minutes=minutes) / buckets
    since = now - step * buckets
    edges = [since + step * i for i in range(1, buckets)]
    # count(*) is every task in the window; each later column counts those at or after
    # one boundary, so a slice is the difference of two neighbouring columns.
    columns: list[Any] = [func.count()]
    columns += [func.sum(case((TaskRow.stopped >= edge, 1), else_=0)) for edge in edges]
    stmt = select(*columns).where(TaskRow.stopped >= since, TaskRow.stopped <= now)

    def work(engine: Engine) -> list[int]:
        with engine.connect() as conn:
            row = conn.execute(stmt).one()
        return [int(value or 0) for value in row]

    at_or_after = [*_run(config, work), 0]
    seconds = step.total_seconds()
    return [(at_or_after[i] - at_or_after[i + 1]) / seconds for i in range(buckets)]


def task_labels(config: Config, *, limit: int = 200) -> tuple[list[str], list[str]]:
    """The groups and functions of stored tasks, sorted, at most ``limit`` of each.

    A monitor offers them as completions for its filters.

    Raises:
        StoreError: the store cannot be read.
    """

    def work(engine: Engine) -> tuple[list[str], list[str]]:
        with engine.connect() as conn:
            groups = conn.scalars(
                select(TaskRow.group)
                .where(TaskRow.group.is_not(None))
                .distinct()
                .order_by(TaskRow.group)
                .limit(limit)
            ).all()
            funcs = conn.scalars(
                select(TaskRow.func).distinct().order_by(TaskRow.func).limit(limit)
            ).all()
        return [g for g in groups if g], list(funcs)

    return _run(config, work)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleStatus:
    """A schedule as a monitor lists it, with the outcome of its last task."""

    id: int
    name: str | None
    func: str
    schedule_type: str
    """One of the ``Schedule.TYPE`` letters."""
    type_label: str
    """The type's name, such as "Minutes"."""
    minutes: int | None
    cron: str | None
    repeats: int
    """Runs left: 0 never runs (paused or used up), negative runs forever."""
    next_run: datetime | None
    cluster: str | None
    last_task: str | None
    """Id of the last task the schedule created."""
    last_success: bool | None
    """Whether that task succeeded; None when the store no longer has it (or it never ran)."""
    last_stopped: datetime | None
    """When that task finished."""


def schedule_statuses(config: Config) -> list[ScheduleStatus]:
    """Every schedule, oldest first, with its last task's outcome, in one query.

    Raises:
        StoreError: the store cannot be read.
    """
    columns = [getattr(ScheduleRow, name) for name in _SCHEDULE_COLUMNS]
    stmt = (
        select(*columns, TaskRow.success, TaskRow.stopped)
        .outerjoin(TaskRow, TaskRow.id == ScheduleRow.task)
        .order_by(ScheduleRow.id)
    )

    def work(engine: Engine) -> list[ScheduleStatus]:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            ScheduleStatus(
                **{name: row._mapping[name] for name in _SCHEDULE_COLUMNS if name != "task"},
                type_label=_TYPE_LABELS.get(row.schedule_type, row.schedule_type),
                last_task=row.task,
                last_success=row.success,
                last_stopped=row.stopped,
            )
            for row in rows
        ]

    return _run(config, work)


# -- the monitor's note of paused schedules -----------------------------------------------


def paused_repeats(config: Config, schedule_id: int) -> int | None:
    """The ``repeats`` a schedule had when the monitor paused it, or None if not noted.

    Raises:
        StoreError: the store cannot be read.
    """
    key = _PAUSED_KEY.format(schedule_id)

    def work(engine: Engine) -> int | None:
        with engine.connect() as conn:
            value = conn.scalar(select(MetaRow.value).where(MetaRow.key == key))
        try:
            return None if value is None else int(value)
        except ValueError:  # a hand-edited note is no reason to fail a resume
            return None

    return _run(config, work)


def keep_paused_repeats(config: Config, schedule_id: int, repeats: int) -> None:
    """Note the ``repeats`` a schedule had before being paused, replacing an older note.

    Raises:
        StoreError: the store cannot be written.
    """
    key = _PAUSED_KEY.format(schedule_id)

    def work(engine: Engine) -> None:
        with writing(engine) as conn:
            conn.execute(delete(MetaRow).where(MetaRow.key == key))
            conn.execute(insert(MetaRow), {"key": key, "value": str(repeats)})

    _run(config, work)


def forget_paused_repeats(config: Config, schedule_id: int) -> None:
    """Drop the note (the schedule was resumed or deleted).

    Raises:
        StoreError: the store cannot be written.
    """
    key = _PAUSED_KEY.format(schedule_id)

    def work(engine: Engine) -> None:
        with writing(engine) as conn:
            conn.execute(delete(MetaRow).where(MetaRow.key == key))

    _run(config, work)
