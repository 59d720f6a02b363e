"""How schedules recur: the schedule types and the maths of their next runs; pure.

Nothing here reads the store or the configuration: the time zone comes in
as an argument, so each rule can be checked with any zone and instant.

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

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING

from croniter import CroniterBadDateError, croniter
from dateutil.relativedelta import relativedelta

from ..errors import ScheduleError

if TYPE_CHECKING:
    from .model import Schedule

__all__ = ["Advance", "ScheduleType", "advance", "next_run_after"]


class ScheduleType(StrEnum):
    """How a schedule recurs: the only list of schedule types.

    A member is its stored letter (``ScheduleType.DAILY == "D"``), so rows,
    forms and the spec's ``Schedule.DAILY`` compare with it unchanged; its
    ``label`` is the spec's name. Django's model takes its choices from here.
    """

    label: str
    """The type's name as the admin and ``qmonitor`` show it."""

    def __new__(cls, letter: str, label: str) -> ScheduleType:
        member = str.__new__(cls, letter)
        member._value_ = letter
        member.label = label
        return member

    ONCE = "O", "Once"
    """Runs once; deleted after the run when ``repeats`` is negative, kept otherwise."""
    MINUTES = "I", "Minutes"
    """Runs every ``minutes`` minutes."""
    HOURLY = "H", "Hourly"
    """Runs every hour."""
    DAILY = "D", "Daily"
    """Runs every day at the local time of its first run."""
    WEEKLY = "W", "Weekly"
    """Runs every week on the weekday and local time of its first run."""
    MONTHLY = "M", "Monthly"
    """Runs every month on the day of its first run, or the month's last day if shorter."""
    QUARTERLY = "Q", "Quarterly"
    """Runs every three months, with the monthly rule for short months."""
    YEARLY = "Y", "Yearly"
    """Runs every year; a February 29th schedule runs on the 28th in common years."""
    CRON = "C", "Cron"
    """Runs at the slots of the ``cron`` expression, in the configured time zone."""

    @classmethod
    def of(cls, value: object) -> ScheduleType | None:
        """The type stored as ``value``, or None when no type is.

        Not ``value in ScheduleType``: Python 3.11 raises for a string that is
        not a member.
        """
        if not isinstance(value, str):
            return None
        return next((kind for kind in cls if kind == value), None)


# One step of each calendar type, as keyword arguments of relativedelta.
_CALENDAR_STEPS: dict[str, tuple[str, int]] = {
    ScheduleType.DAILY: ("days", 1),
    ScheduleType.WEEKLY: ("days", 7),
    ScheduleType.MONTHLY: ("months", 1),
    ScheduleType.QUARTERLY: ("months", 3),
    ScheduleType.YEARLY: ("months", 12),
}


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
    if schedule_type == ScheduleType.MINUTES:
        if not minutes or minutes < 1:
            raise ScheduleError(f"a MINUTES schedule needs minutes >= 1, not {minutes!r}")
        return current + timedelta(minutes=minutes)
    if schedule_type == ScheduleType.HOURLY:
        return current + timedelta(hours=1)
    if schedule_type == ScheduleType.CRON:
        return _cron_after(cron or "", current, tz)
    if schedule_type in _CALENDAR_STEPS:
        unit, size = _CALENDAR_STEPS[schedule_type]
        return _at(_wall(current, tz) + relativedelta(**{unit: size}), tz)
    if schedule_type == ScheduleType.ONCE:
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
    if item.schedule_type == ScheduleType.ONCE:
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
    if schedule_type in {ScheduleType.MINUTES, ScheduleType.HOURLY}:
        step = upcoming - previous
        return upcoming + step * ((now - upcoming) // step + 1)
    if schedule_type == ScheduleType.CRON:
        return after(now)
    while upcoming <= now:  # calendar types: at most one step per missed day
        upcoming = after(upcoming)
    return upcoming
