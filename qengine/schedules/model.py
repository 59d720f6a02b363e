"""The ``Schedule`` model and its storage: ``schedule()``, reading, saving and deleting rows.

No threads live here; the cluster's scheduler thread runs the stored
schedules through ``claim``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..db import get_engine
from ..errors import ScheduleError
from ..runtime import get_config, get_store
from ..task import Task
from .recurrence import ScheduleType, _cron_after
from .rows import _row_fields, _table, _to_row, _to_utc, _validate

__all__ = ["Schedule", "check_values", "first_run", "schedule"]


def _engine(store_url: str | None) -> Engine:
    return get_engine(store_url or get_config().store)


@dataclass(slots=True, kw_only=True)
class Schedule:
    """A stored schedule: what to call, and when (the spec's ``Schedule`` model).

    Tasks it creates get its ``name``, or its ``id`` when it has none, as
    their group. ``next_run`` is aware UTC once saved.
    """

    # The spec's names for the schedule types; ScheduleType describes each.
    ONCE: ClassVar[ScheduleType] = ScheduleType.ONCE
    MINUTES: ClassVar[ScheduleType] = ScheduleType.MINUTES
    HOURLY: ClassVar[ScheduleType] = ScheduleType.HOURLY
    DAILY: ClassVar[ScheduleType] = ScheduleType.DAILY
    WEEKLY: ClassVar[ScheduleType] = ScheduleType.WEEKLY
    MONTHLY: ClassVar[ScheduleType] = ScheduleType.MONTHLY
    QUARTERLY: ClassVar[ScheduleType] = ScheduleType.QUARTERLY
    YEARLY: ClassVar[ScheduleType] = ScheduleType.YEARLY
    CRON: ClassVar[ScheduleType] = ScheduleType.CRON
    TYPE: ClassVar[tuple[tuple[str, str], ...]] = tuple(
        (kind.value, kind.label) for kind in ScheduleType
    )
    """The schedule types as (letter, label) choices."""

    func: str
    """Dotted path of the function to run."""
    args: tuple[Any, ...] = ()
    """Positional arguments: Python literals, stored as their ``repr``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments: Python literals, stored as their ``repr``."""
    name: str | None = None
    """Unique name; the group of the tasks it creates."""
    hook: str | None = None
    """Dotted path of the hook run with each finished task."""
    schedule_type: str = ScheduleType.ONCE
    """One of the ``ScheduleType`` letters."""
    minutes: int | None = None
    """Interval of a MINUTES schedule; ignored by the other types."""
    cron: str | None = None
    """Cron expression of a CRON schedule; ignored by the other types."""
    repeats: int = -1
    """Runs left: n > 0 runs n more times, 0 never runs, negative runs forever (counting down)."""
    next_run: datetime | None = None
    """When it runs next; a naive value is read in the configured ``time_zone`` on save."""
    cluster: str | None = None
    """Only the cluster with this name runs the schedule; None: any cluster."""
    q_options: dict[str, Any] | None = None
    """Options passed to ``async_task`` for each task of this schedule."""
    task: str | None = None
    """Id of the last task this schedule created."""
    id: int | None = None
    """Primary key; None until saved."""

    def __str__(self) -> str:
        return self.name or self.func

    @property
    def group(self) -> str:
        """The group of the tasks this schedule creates: its name, else its id."""
        return self.name or str(self.id)

    def last_run(self) -> Task | None:
        """The last task this schedule created, if the store still has it."""
        if not self.task:
            return None
        return get_store().get(self.task)

    def success(self) -> bool | None:
        """Whether the last task succeeded; None when there is no such task."""
        task = self.last_run()
        return None if task is None else task.success

    # -- storage ---------------------------------------------------------------------

    @classmethod
    def get(cls, id_or_name: int | str, *, store_url: str | None = None) -> Schedule | None:
        """The schedule with this id (an int) or name (a str), or None."""
        column = _table.c.id if isinstance(id_or_name, int) else _table.c.name
        with _engine(store_url).connect() as conn:
            row = conn.execute(select(_table).where(column == id_or_name)).first()
        return None if row is None else _from_row(row._mapping)

    @classmethod
    def list(cls, *, store_url: str | None = None, **filters: Any) -> list[Schedule]:
        """Schedules whose columns equal the given values (e.g. ``func=``), oldest first."""
        unknown = sorted(set(filters) - set(_table.c.keys()))
        if unknown:
            raise TypeError(f"cannot filter schedules on {', '.join(unknown)}")
        stmt = select(_table).order_by(_table.c.id)
        for key, value in filters.items():
            column = _table.c[key]
            stmt = stmt.where(column.is_(None) if value is None else column == value)
        with _engine(store_url).connect() as conn:
            return [_from_row(row._mapping) for row in conn.execute(stmt)]

    def save(self, *, store_url: str | None = None) -> Schedule:
        """Validate, then insert (no ``id`` yet) or update the row; return self.

        Raises:
            ScheduleError: the schedule is invalid or its name is taken; nothing is written.
        """
        self.next_run = _to_utc(self.next_run) if self.next_run else None
        _validate(self)
        values = _to_row(self)
        try:
            with _engine(store_url).begin() as conn:
                if self.id is None:
                    key = conn.execute(insert(_table).values(values)).inserted_primary_key
                    assert key is not None  # a single-row insert always reports its key
                    self.id = int(key[0])
                else:
                    conn.execute(update(_table).where(_table.c.id == self.id).values(values))
        except IntegrityError as exc:  # the only unique column besides the key is the name
            raise ScheduleError(f"a schedule named {self.name!r} already exists") from exc
        return self

    def delete(self, *, store_url: str | None = None) -> bool:
        """Remove the row; True if there was one."""
        if self.id is None:
            return False
        with _engine(store_url).begin() as conn:
            deleted = conn.execute(delete(_table).where(_table.c.id == self.id)).rowcount
        return bool(deleted)


def _from_row(row: RowMapping) -> Schedule:
    """The schedule a ``q_schedule`` row holds.

    Raises:
        ScheduleError: ``args`` or ``kwargs`` hold no literal, naming the row.
    """
    return Schedule(**_row_fields(row))


def schedule(
    func: str,
    *args: Any,
    name: str | None = None,
    hook: str | None = None,
    schedule_type: str = ScheduleType.ONCE,
    minutes: int | None = None,
    cron: str | None = None,
    repeats: int = -1,
    next_run: datetime | None = None,
    cluster: str | None = None,
    q_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Schedule:
    """Create and store a schedule of ``func(*args, **kwargs)``.

    Args:
        func: dotted path of the function. Schedules are stored and may run in
            another process much later, so a callable is refused.
        args: positional arguments; Python literals only, so they can be
            stored as text and edited in the admin.
        hook: dotted path of a function called with each finished task.
        schedule_type: one of the ``ScheduleType`` letters (``Schedule.DAILY``…).
        minutes: interval of a MINUTES schedule (>= 1).
        cron: cron expression of a CRON schedule, read in the configured
            ``time_zone``.
        repeats: runs before the schedule stops; -1 forever, 0 paused.
        next_run: first run. None means now, or for CRON the first slot after
            now. An aware datetime may be in any zone; a naive one is read in
            the configured ``time_zone``.
        cluster: name of the only cluster that may run it.
        q_options: options for ``async_task`` (timeout, hook, group, …).
        kwargs: keyword arguments of the function; Python literals only.

    Raises:
        ScheduleError: any invalid value or a taken name; nothing is stored then.
    """
    item = Schedule(
        func=func, args=args, kwargs=kwargs, name=name, hook=hook,
        schedule_type=schedule_type, minutes=minutes, cron=cron, repeats=repeats,
        next_run=_to_utc(next_run) if next_run is not None else None,
        cluster=cluster, q_options=q_options,
    )  # fmt: skip
    if item.next_run is None:
        item.next_run = first_run(schedule_type, cron)
    return item.save()


def first_run(schedule_type: str, cron: str | None, now: datetime | None = None) -> datetime:
    """When a schedule created without ``next_run`` runs first: now, or its first cron slot.

    A cron schedule starts at its first slot: running at creation would be off its grid.
    """
    now = now or datetime.now(UTC)
    if schedule_type == ScheduleType.CRON and isinstance(cron, str):
        return _cron_after(cron, now, get_config().zone)
    return now


def check_values(values: Mapping[str, Any]) -> Schedule:
    """Validate a schedule given as column values, the way an editor holds them.

    ``args`` and ``kwargs`` are literal text (``"1, 2, 'John'"``), ``q_options``
    a dict. For editors other than ``schedule()`` (Django's admin and
    models), so they refuse what ``schedule()`` refuses.

    Raises:
        ScheduleError: what is wrong, naming the field.
    """
    row = {column: values.get(column) for column in _table.c.keys()}  # noqa: SIM118
    row["q_options"] = None
    item = _from_row(row)  # type: ignore[arg-type]
    item.q_options = values.get("q_options") or None
    if item.next_run is not None:
        item.next_run = _to_utc(item.next_run)
    _validate(item)
    return item
