"""Schedules: their validation and storage in ``q_schedule``, and the maths of their next runs.

No threads live here. The cluster's scheduler thread calls ``claim_due`` and
``seconds_until_due``; everything else is the public ``schedule()`` /
``Schedule`` API and the pure functions ``next_run_after`` and ``advance``.

Time: ``next_run`` is stored in UTC. Minutes and hourly schedules step in
absolute time; daily and longer schedules and cron expressions are computed on
the wall clock of the configured ``time_zone``, so a 09:00 daily schedule stays
at 09:00 local time across DST changes.

Months follow the spec: each run steps from the previous one with
``relativedelta``, so a schedule on January 31st runs on February 29th (the
last day of the shorter month) and keeps that day afterwards (March 29th …);
a yearly schedule on February 29th runs on February 28th in the following
years. A daily schedule whose wall time falls in a skipped DST hour runs an
hour later that day and keeps the later time.
"""

from __future__ import annotations

import ast
import logging
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar, Protocol, cast

import cloudpickle
from croniter import CroniterBadDateError, croniter
from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .config import MAX_INT, shown
from .db import ScheduleRow, get_engine
from .errors import ScheduleError
from .runtime import get_config
from .task import NAME_LENGTH, PATH_LENGTH, Task, storable

__all__ = [
    "Advance",
    "Claim",
    "Enqueue",
    "Schedule",
    "advance",
    "check_values",
    "claim_due",
    "first_run",
    "next_run_after",
    "schedule",
    "seconds_until_due",
]

log = logging.getLogger(__name__)

ONCE, MINUTES, HOURLY, DAILY, WEEKLY = "O", "I", "H", "D", "W"
MONTHLY, QUARTERLY, YEARLY, CRON = "M", "Q", "Y", "C"
_LABELS = {ONCE: "Once", MINUTES: "Minutes", HOURLY: "Hourly", DAILY: "Daily",
           WEEKLY: "Weekly", MONTHLY: "Monthly", QUARTERLY: "Quarterly",
           YEARLY: "Yearly", CRON: "Cron"}  # fmt: skip

# One step of each calendar type, as keyword arguments of relativedelta.
_CALENDAR_STEPS = {DAILY: ("days", 1), WEEKLY: ("days", 7), MONTHLY: ("months", 1),
                   QUARTERLY: ("months", 3), YEARLY: ("months", 12)}  # fmt: skip

_table = cast(Table, ScheduleRow.__table__)
_LOCKING_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})


def _engine(store_url: str | None) -> Engine:
    return get_engine(store_url or get_config().store)


@dataclass(slots=True, kw_only=True)
class Schedule:
    """A stored schedule: what to call, and when (the spec's ``Schedule`` model).

    Tasks it creates get its ``name``, or its ``id`` when it has none, as
    their group. ``next_run`` is aware UTC once saved.
    """

    ONCE: ClassVar[str] = ONCE
    """Runs once; deleted after the run when ``repeats`` is negative, kept otherwise."""
    MINUTES: ClassVar[str] = MINUTES
    """Runs every ``minutes`` minutes."""
    HOURLY: ClassVar[str] = HOURLY
    """Runs every hour."""
    DAILY: ClassVar[str] = DAILY
    """Runs every day at the local time of its first run."""
    WEEKLY: ClassVar[str] = WEEKLY
    """Runs every week on the weekday and local time of its first run."""
    MONTHLY: ClassVar[str] = MONTHLY
    """Runs every month on the day of its first run, or the month's last day if shorter."""
    QUARTERLY: ClassVar[str] = QUARTERLY
    """Runs every three months, with the monthly rule for short months."""
    YEARLY: ClassVar[str] = YEARLY
    """Runs every year; a February 29th schedule runs on the 28th in common years."""
    CRON: ClassVar[str] = CRON
    """Runs at the slots of the ``cron`` expression, in the configured time zone."""
    TYPE: ClassVar[tuple[tuple[str, str], ...]] = tuple(_LABELS.items())
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
    schedule_type: str = ONCE
    """One of the ``TYPE`` letters."""
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
        from .runtime import get_store  # the store pulls in the cache; only load it when asked

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


def schedule(
    func: str,
    *args: Any,
    name: str | None = None,
    hook: str | None = None,
    schedule_type: str = ONCE,
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
        schedule_type: one of the ``Schedule.TYPE`` letters.
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
    now = datetime.now(UTC)
    item = Schedule(
        func=func, args=args, kwargs=kwargs, name=name, hook=hook,
        schedule_type=schedule_type, minutes=minutes, cron=cron, repeats=repeats,
        next_run=_to_utc(next_run) if next_run is not None else None,
        cluster=cluster, q_options=q_options,
    )  # fmt: skip
    if item.next_run is None:
        # A cron schedule starts at its first slot: running at creation would be off its grid.
        item.next_run = now
        if schedule_type == CRON and isinstance(cron, str):
            item.next_run = _cron_after(cron, now, get_config().zone)
    return item.save()


def first_run(schedule_type: str, cron: str | None, now: datetime | None = None) -> datetime:
    """When a schedule created without ``next_run`` runs first: now, or its first cron slot."""
    now = now or datetime.now(UTC)
    if schedule_type == CRON and isinstance(cron, str):
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


# -- validation and rows --------------------------------------------------------------


def _to_utc(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"next_run must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=get_config().zone)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # within a day of year 1 or 9999, and not in UTC
        raise ScheduleError(f"next_run {moment!r} has no UTC time (out of range)") from exc


def _is_literal(value: Any) -> bool:
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except Exception:  # also what a user object's __repr__ or __eq__ raises
        return False


def _check_path(role: str, value: Any) -> None:
    if callable(value):
        raise ScheduleError(
            f"{role} must be a dotted path string such as 'math.floor', not a callable: "
            "schedules are stored and run later, maybe in another process"
        )
    if (
        not isinstance(value, str)
        or "." not in value.strip(".")
        or not storable(value, PATH_LENGTH)
    ):
        raise ScheduleError(f"{role} {shown(value)} is not a dotted path such as 'math.floor'")


def _check_name(key: str, value: Any) -> None:
    if value is not None and (
        not isinstance(value, str) or not value or not storable(value, NAME_LENGTH)
    ):
        raise ScheduleError(
            f"{key} {shown(value)} must be None or a string of 1 to {NAME_LENGTH} characters, "
            "without NUL"
        )


def _is_int(value: Any, low: int) -> bool:
    """An integer the ``q_schedule`` column holds (32 bits), from ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_INT


def _validate(item: Schedule) -> None:
    _check_path("func", item.func)
    if item.hook is not None:
        _check_path("hook", item.hook)
    _check_name("name", item.name)
    _check_name("cluster", item.cluster)
    if not isinstance(item.schedule_type, str) or item.schedule_type not in _LABELS:
        allowed = ", ".join(f"{letter} ({label})" for letter, label in _LABELS.items())
        kind = shown(item.schedule_type)
        raise ScheduleError(f"unknown schedule type {kind}; allowed: {allowed}")
    if item.schedule_type == MINUTES and not _is_int(item.minutes, 1):
        raise ScheduleError(
            f"a MINUTES schedule needs minutes >= 1 (at most {MAX_INT}), not {shown(item.minutes)}"
        )
    # Other types ignore minutes and cron, but their columns must still hold them.
    if item.minutes is not None and not _is_int(item.minutes, -MAX_INT - 1):
        raise ScheduleError(f"minutes must be None or an integer, not {shown(item.minutes)}")
    if item.schedule_type == CRON:
        if not isinstance(item.cron, str) or len(item.cron) > 100:
            raise ScheduleError(f"{shown(item.cron)} is not a valid cron expression")
        _cron_after(item.cron, datetime.now(UTC), UTC)  # refuses bad syntax and dead dates
    if item.cron is not None and (not isinstance(item.cron, str) or len(item.cron) > 100):
        raise ScheduleError(
            f"cron must be None or a string of at most 100 characters, not {shown(item.cron)}"
        )
    if not _is_int(item.repeats, -MAX_INT - 1):
        raise ScheduleError(
            f"repeats must be an integer from {-MAX_INT - 1} to {MAX_INT}, "
            f"not {shown(item.repeats)}"
        )
    if not isinstance(item.args, tuple | list) or not _is_literal(tuple(item.args)):
        raise ScheduleError(
            "args must be Python literals (numbers, strings, tuples, lists, dicts, …): "
            f"they are stored as text; got {shown(item.args)}"
        )
    if (
        not isinstance(item.kwargs, dict)
        or not all(isinstance(key, str) for key in item.kwargs)
        or not _is_literal(item.kwargs)
    ):
        raise ScheduleError(
            f"kwargs must map names to Python literals (stored as text); got {shown(item.kwargs)}"
        )
    if item.next_run is not None and item.next_run.tzinfo is None:
        raise ScheduleError("next_run must be an aware datetime here")
    _check_options(item.q_options)


def _check_options(options: Any) -> None:
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise ScheduleError(f"q_options must be a dict, not {type(options).__name__}")
    if "broker" in options:
        raise ScheduleError("q_options cannot hold a broker instance: schedules are stored")
    from .api import OPTION_KEYS, check_options  # the API imports the cluster: only when needed

    # The spec names a broker for a schedule's tasks by its name ('broker_name'); the
    # scheduler accepts it and falls back to the cluster's own broker. 'on_commit' has no
    # caller's transaction to wait for: the scheduler queues in its own claim.
    allowed = (OPTION_KEYS - {"broker", "on_commit"}) | {"broker_name"}
    unknown = sorted(set(options) - allowed, key=repr)  # the keys may be of any type
    if unknown:
        raise ScheduleError(
            f"unknown q_options key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    broker_name = options.get("broker_name")
    if broker_name is not None and not isinstance(broker_name, str):
        raise ScheduleError(f"q_options broker_name must be a string, not {shown(broker_name)}")
    try:
        check_options(options)  # else each run would be refused by async_task, for ever
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"q_options: {exc}") from exc
    try:
        cloudpickle.dumps(dict(options))
    except Exception as exc:  # pickling raises whatever the offending object raises
        raise ScheduleError(f"q_options cannot be stored: {exc}") from exc


def _to_row(item: Schedule) -> dict[str, Any]:
    options = dict(item.q_options or {})
    return {
        "name": item.name,
        "func": item.func,
        "hook": item.hook,
        "args": repr(tuple(item.args)),
        "kwargs": repr(dict(item.kwargs)),
        "schedule_type": item.schedule_type,
        "minutes": item.minutes,
        "cron": item.cron,
        "repeats": item.repeats,
        "next_run": item.next_run,
        "cluster": item.cluster,
        "task": item.task,
        "q_options": cloudpickle.dumps(options) if options else None,
    }


def _literal(text: str | None, schedule_id: int, column: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ScheduleError(f"schedule {schedule_id}: {column} {text!r} is not a literal") from exc


def _keywords(text: str | None, schedule_id: int) -> Any:
    """Keyword arguments as a dict literal or as ``x=1, name='John'`` (the admin's form)."""
    if text is None or not text.strip():
        return {}
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("positional values")
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (ValueError, SyntaxError) as exc:
        raise ScheduleError(
            f"schedule {schedule_id}: kwargs {text!r} is neither a dict literal nor "
            "name=value pairs of literals"
        ) from exc


def _from_row(row: RowMapping) -> Schedule:
    args = _literal(row["args"], row["id"], "args")
    # The admin may hold "2, -2" (a tuple) or "9" (one value), as the spec's examples do.
    args = () if args is None else args if isinstance(args, tuple) else (args,)
    kwargs = _keywords(row["kwargs"], row["id"])
    if not isinstance(kwargs, dict):
        raise ScheduleError(f"schedule {row['id']}: kwargs {row['kwargs']!r} is not a dict")
    options = pickle.loads(row["q_options"]) if row["q_options"] else {}
    return Schedule(
        id=row["id"], name=row["name"], func=row["func"], hook=row["hook"],
        args=args, kwargs=kwargs, schedule_type=row["schedule_type"],
        minutes=row["minutes"], cron=row["cron"], repeats=row["repeats"],
        next_run=row["next_run"], cluster=row["cluster"], task=row["task"],
        q_options=options or None,
    )  # fmt: skip


# -- the maths of next runs ------------------------------------------------------------


def _wall(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None, fold=0)


def _at(wall: datetime, tz: tzinfo) -> datetime:
    # A wall time skipped by DST resolves with the offset before the change, i.e. an hour
    # later in wall time (02:30 → 03:30 in Paris); a repeated one takes its first occurrence.
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _cron_after(cron: str, moment: datetime, tz: tzinfo) -> datetime:
    # croniter walks the zone's wall clock: a 09:00 slot stays 09:00 across DST, a slot in
    # a skipped hour moves to the hour's end, one in a repeated hour runs in both.
    if not croniter.is_valid(cron):
        raise ScheduleError(f"{cron!r} is not a valid cron expression")
    try:
        after: datetime = croniter(cron, moment.astimezone(tz)).get_next(datetime)
    except CroniterBadDateError as exc:  # valid syntax that never matches, e.g. Feb 31st
        raise ScheduleError(f"cron expression {cron!r} never fires") from exc
    return after.astimezone(UTC)


def next_run_after(
    schedule_type: str,
    current_next_run: datetime,
    *,
    minutes: int | None = None,
    cron: str | None = None,
    tz: tzinfo,
) -> datetime:
    """The slot after ``current_next_run`` (aware), in UTC.

    MINUTES and HOURLY add absolute time. Calendar types step from
    ``current_next_run`` on the wall clock of ``tz`` (see the module
    docstring). CRON takes the expression's next slot in ``tz``.

    Raises:
        ScheduleError: ONCE has no next run; a bad type, interval or expression.
    """
    current = current_next_run.astimezone(UTC)
    if schedule_type == MINUTES:
        if not minutes or minutes < 1:
            raise ScheduleError(f"a MINUTES schedule needs minutes >= 1, not {minutes!r}")
        return current + timedelta(minutes=minutes)
    if schedule_type == HOURLY:
        return current + timedelta(hours=1)
    if schedule_type == CRON:
        return _cron_after(cron or "", current, tz)
    if schedule_type in _CALENDAR_STEPS:
        unit, size = _CALENDAR_STEPS[schedule_type]
        return _at(_wall(current, tz) + relativedelta(**{unit: size}), tz)
    if schedule_type == ONCE:
        raise ScheduleError("a ONCE schedule has no next run")
    raise ScheduleError(f"unknown schedule type {schedule_type!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """What the scheduler must do with one schedule at one instant."""

    slots: tuple[datetime, ...]
    """The slots to run now, oldest first: one task each."""
    next_run: datetime | None
    repeats: int
    delete: bool = False
    """Remove the schedule instead of updating it (a ONCE schedule with negative repeats)."""

    @property
    def runs(self) -> int:
        return len(self.slots)


def advance(
    item: Schedule, now: datetime, *, catch_up: bool, tz: tzinfo, max_runs: int | None = None
) -> Advance:
    """Decide the runs due at ``now`` and the schedule's next state; pure.

    With ``catch_up`` every missed slot runs once; without it one run stands
    for all of them. Either way ``next_run`` ends after ``now``, unless
    positive ``repeats`` run out first (the schedule then stays, with
    ``repeats`` 0, never to run again) or ``max_runs`` caps this call (the
    rest of the backlog is then still due). Negative ``repeats`` keep
    counting down, as in the spec.
    """
    unchanged = Advance(slots=(), next_run=item.next_run, repeats=item.repeats)
    if item.repeats == 0 or item.next_run is None or item.next_run > now:
        return unchanged
    if item.schedule_type == ONCE:
        return Advance(slots=(item.next_run,), next_run=item.next_run,
                       repeats=0 if item.repeats > 0 else item.repeats - 1,
                       delete=item.repeats < 0)  # fmt: skip

    def after(moment: datetime) -> datetime:
        return next_run_after(item.schedule_type, moment, minutes=item.minutes,
                              cron=item.cron, tz=tz)  # fmt: skip

    limit = item.repeats if item.repeats > 0 else math.inf
    if max_runs is not None:
        limit = min(limit, max_runs)
    slots = [item.next_run]
    upcoming = after(item.next_run)
    if catch_up:
        while upcoming <= now and len(slots) < limit:
            slots.append(upcoming)
            upcoming = after(upcoming)
    elif upcoming <= now:
        upcoming = _first_after(item.schedule_type, item.next_run, upcoming, now, after)
    return Advance(slots=tuple(slots), next_run=upcoming,
                   repeats=item.repeats - len(slots))  # fmt: skip


def _first_after(
    schedule_type: str,
    previous: datetime,
    upcoming: datetime,
    now: datetime,
    after: Callable[[datetime], datetime],
) -> datetime:
    """The first slot after ``now``, skipping a long backlog without walking it where possible."""
    if schedule_type in {MINUTES, HOURLY}:
        step = upcoming - previous
        return upcoming + step * ((now - upcoming) // step + 1)
    if schedule_type == CRON:
        return after(now)
    while upcoming <= now:  # calendar types: at most one step per missed day
        upcoming = after(upcoming)
    return upcoming


# -- the scheduler thread's transaction ------------------------------------------------


class Enqueue(Protocol):
    """Builds and enqueues one task of ``schedule`` and returns its id.

    ``conn`` is the claiming transaction: a SQL broker on the same database
    should insert through it, both to be atomic with the claim and because
    SQLite would make a second connection wait for the claim's write lock.
    ``slot`` is the time the task stands for: with the schedule it names
    the run, so an enqueue repeated after a failed commit can be recognised.
    """

    def __call__(
        self, schedule: Schedule, *, group: str, conn: Connection, slot: datetime
    ) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """One schedule handled by ``claim_due``: its state before, and what was done."""

    schedule: Schedule
    advance: Advance | None
    task_ids: tuple[str, ...] = ()
    error: str | None = None
    """Why it failed; it was left unchanged and is retried on the next call."""


def _runnable(cluster_name: str) -> tuple[Any, ...]:
    """Schedules this cluster may run: not paused, and meant for any cluster or for this one."""
    return (
        _table.c.repeats != 0,
        or_(_table.c.cluster.is_(None), _table.c.cluster == cluster_name),
    )


def claim_due(
    engine: Engine,
    now: datetime,
    cluster_name: str,
    enqueue: Enqueue,
    *,
    catch_up: bool,
    tz: tzinfo,
    batch: int = 100,
    max_runs: int = 100,
) -> list[Claim]:
    """Run every schedule due at ``now`` for this cluster, each slot exactly once.

    One transaction locks the due rows (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL and MySQL/MariaDB, ``BEGIN IMMEDIATE`` on SQLite), calls
    ``enqueue`` once per slot and moves ``next_run``/``repeats``/``task`` or
    deletes the row, so a concurrent cluster either waits or skips the rows
    and then finds them no longer due. At most ``batch`` schedules and
    ``max_runs`` slots of each are handled per call; leftovers stay due.
    """
    stmt = select(_table).where(_table.c.next_run <= now, *_runnable(cluster_name))
    stmt = stmt.order_by(_table.c.next_run, _table.c.id).limit(batch)
    if engine.dialect.name in _LOCKING_DIALECTS:
        stmt = stmt.with_for_update(skip_locked=True)
    claims: list[Claim] = []
    with engine.connect() as plain:
        # Take SQLite's write lock before reading, so two clusters cannot both read a row
        # as due; other databases ignore the option and lock the rows selected above.
        conn = plain.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            for row in conn.execute(stmt).all():
                claims.append(_claim_one(conn, row._mapping, now, enqueue, catch_up, tz, max_runs))
    return claims


def _claim_one(
    conn: Connection,
    row: RowMapping,
    now: datetime,
    enqueue: Enqueue,
    catch_up: bool,
    tz: tzinfo,
    max_runs: int,
) -> Claim:
    # A savepoint per schedule: one that cannot be read or enqueued (a broken literal edited
    # in the admin, an option async_task refuses) must neither block nor roll back the others,
    # whose tasks are already enqueued. So this catches broadly, logs, and moves on.
    savepoint = conn.begin_nested()
    item: Schedule | None = None
    try:
        item = _from_row(row)
        plan = advance(item, now, catch_up=catch_up, tz=tz, max_runs=max_runs)
        task_ids = tuple(
            enqueue(item, group=item.group, conn=conn, slot=slot) for slot in plan.slots
        )
        where = _table.c.id == item.id
        if plan.delete:
            conn.execute(delete(_table).where(where))
        else:
            # Only the columns the scheduler owns: the rest stays as the admin wrote it.
            values = {
                "task": task_ids[-1] if task_ids else item.task,
                "next_run": plan.next_run,
                "repeats": plan.repeats,
            }
            conn.execute(update(_table).where(where).values(values))
    except Exception as exc:
        savepoint.rollback()
        log.exception("schedule %s (%s) could not run; retrying later", row["id"], row["func"])
        return Claim(schedule=item or Schedule(id=row["id"], func=row["func"]), advance=None,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
    savepoint.commit()
    if task_ids:
        log.debug("schedule %s queued %d task(s), next run %s", item.id, len(task_ids),
                  plan.next_run)  # fmt: skip
    return Claim(schedule=item, advance=plan, task_ids=task_ids)


def seconds_until_due(engine: Engine, now: datetime, cluster_name: str) -> float | None:
    """Seconds from ``now`` until this cluster's next schedule is due (0 if one is);
    None when it has none, so the scheduler thread can sleep exactly that long."""
    stmt = select(func.min(_table.c.next_run)).where(*_runnable(cluster_name))
    with engine.connect() as conn:
        soonest: datetime | None = conn.execute(stmt).scalar()
    if soonest is None:
        return None
    return max(0.0, (soonest - now).total_seconds())
