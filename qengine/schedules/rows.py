"""Schedules as ``q_schedule`` rows: the rules a stored schedule obeys, and conversions both ways.

Everything here works on a schedule's values: ``_validate`` and ``_to_row``
read any object with a ``Schedule``'s fields, ``_row_fields`` gives the
keyword arguments of one. Building ``Schedule`` objects is ``model``'s, so
the model imports this module and never the other way round.
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import cloudpickle
from sqlalchemy import RowMapping, Table

from ..config import MAX_INT, shown
from ..db import ScheduleRow
from ..errors import ScheduleError
from ..runtime import get_config
from ..task import NAME_LENGTH, PATH_LENGTH, storable
from .recurrence import ScheduleType, _cron_after

if TYPE_CHECKING:
    from .model import Schedule

__all__: list[str] = []

_table = cast(Table, ScheduleRow.__table__)


def _to_utc(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"next_run must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=get_config().zone)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # within a day of year 1 or 9999, and not in UTC
        raise ScheduleError(f"next_run {moment!r} has no UTC time (out of range)") from exc


# -- validation -----------------------------------------------------------------------


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
    if ScheduleType.of(item.schedule_type) is None:
        allowed = ", ".join(f"{kind} ({kind.label})" for kind in ScheduleType)
        kind = shown(item.schedule_type)
        raise ScheduleError(f"unknown schedule type {kind}; allowed: {allowed}")
    if item.schedule_type == ScheduleType.MINUTES and not _is_int(item.minutes, 1):
        raise ScheduleError(
            f"a MINUTES schedule needs minutes >= 1 (at most {MAX_INT}), not {shown(item.minutes)}"
        )
    # Other types ignore minutes and cron, but their columns must still hold them.
    if item.minutes is not None and not _is_int(item.minutes, -MAX_INT - 1):
        raise ScheduleError(f"minutes must be None or an integer, not {shown(item.minutes)}")
    if item.schedule_type == ScheduleType.CRON:
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
    from ..api import OPTION_KEYS, check_options  # the API imports the cluster: only when needed

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


# -- rows -----------------------------------------------------------------------------


def _to_row(item: Schedule) -> dict[str, Any]:
    """The column values of a validated schedule."""
    options = dict(item.q_options or {})
    return {
        "name": item.name,
        "func": item.func,
        "hook": item.hook,
        "args": repr(tuple(item.args)),
        "kwargs": repr(dict(item.kwargs)),
        "schedule_type": str(item.schedule_type),  # a ScheduleType member: its letter
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


def _row_fields(row: RowMapping) -> dict[str, Any]:
    """The ``Schedule`` keyword arguments of a ``q_schedule`` row.

    Raises:
        ScheduleError: ``args`` or ``kwargs`` hold no literal (an admin's typo), naming the row.
    """
    args = _literal(row["args"], row["id"], "args")
    # The admin may hold "2, -2" (a tuple) or "9" (one value), as the spec's examples do.
    args = () if args is None else args if isinstance(args, tuple) else (args,)
    kwargs = _keywords(row["kwargs"], row["id"])
    if not isinstance(kwargs, dict):
        raise ScheduleError(f"schedule {row['id']}: kwargs {row['kwargs']!r} is not a dict")
    options = pickle.loads(row["q_options"]) if row["q_options"] else {}
    return {
        "id": row["id"], "name": row["name"], "func": row["func"], "hook": row["hook"],
        "args": args, "kwargs": kwargs, "schedule_type": row["schedule_type"],
        "minutes": row["minutes"], "cron": row["cron"], "repeats": row["repeats"],
        "next_run": row["next_run"], "cluster": row["cluster"], "task": row["task"],
        "q_options": options or None,
    }  # fmt: skip
