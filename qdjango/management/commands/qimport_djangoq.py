"""``manage.py qimport_djangoq``: schedules and task history from django-q's tables into ours.

django-q and django-q2 keep schedules in ``django_q_schedule`` and finished
tasks in ``django_q_task`` of the project's database. Both are read with
plain SQL (django_q need not be installed) and written through qdjango's
models, so every imported schedule passes the checks ``schedule()`` makes.

Running it again imports nothing twice: a task keeps its id, and each
imported schedule is noted in ``q_meta`` under its django-q id. Packages
still queued in ``django_q_ormq`` (or in django-q's Redis lists) are signed
by django-q and are not taken over: let a django-q cluster finish them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from qdjango.conf import store_alias
from qdjango.models import MetaEntry, Schedule, Task
from qengine import schedules as engine_schedules
from qengine.errors import ScheduleError

SCHEDULE_TABLE = "django_q_schedule"
TASK_TABLE = "django_q_task"
QUEUE_TABLE = "django_q_ormq"
META_KEY = "import:django_q_schedule:{}"
"""``q_meta`` key noting which qdjango schedule a django-q schedule became."""
BATCH = 500
"""Tasks read and written at a time: bounded memory on long histories."""
SHOWN_PROBLEMS = 20
"""Skipped rows listed one by one; past this only their number is given."""

_NOT_OURS = {
    "BW": "django-q2's biweekly type",
    "BM": "django-q2's bimonthly type",
}
_DROPPED_OPTIONS = ("broker", "broker_name")
"""q_options keys that name a django-q broker; a schedule here runs on its cluster's broker."""


class _ObjectWrapper:
    """Stands in for ``picklefield.fields._ObjectWrapper``, which wraps model instances.

    django-picklefield wraps a value that is itself a model instance before
    pickling it; unpickling names the wrapper's class, so it is mapped here
    and django-picklefield need not be installed.
    """

    __slots__ = ("_obj",)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("picklefield.fields", "_ObjectWrapper"):
            return _ObjectWrapper
        return super().find_class(module, name)


def decode_pickled(text: str | bytes | memoryview | None) -> Any:
    """A django-picklefield column's value: base64 of a pickle, maybe zlib-compressed.

    These pickles come from the project's own database, trusted as the
    result store is (``qengine.store.loads``); unpickling may import the
    project's modules (a pickled model instance needs its model).

    Raises:
        ValueError: the text is not such a value, or names a class that cannot be imported.
    """
    if text is None:
        return None
    raw = bytes(text) if isinstance(text, memoryview) else text
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from exc
    if data[:1] == b"x":  # zlib's header: a field declared with compress=True
        with contextlib.suppress(zlib.error):  # a protocol 0 pickle may start with "x" too
            data = zlib.decompress(data)
    try:
        value = _Unpickler(io.BytesIO(data)).load()
    except Exception as exc:  # unpickling raises whatever the pickled classes raise
        raise ValueError(f"cannot be unpickled here ({type(exc).__name__}: {exc})") from exc
    return value._obj if isinstance(value, _ObjectWrapper) else value


def aware(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as an aware datetime (SQLite returns naive ones, or text)."""
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        raise ValueError(f"{value!r} is not a timestamp")
    if timezone.is_naive(moment):
        # Django wrote UTC with USE_TZ, local time of TIME_ZONE without.
        zone = UTC if settings.USE_TZ else timezone.get_default_timezone()
        moment = timezone.make_aware(moment, zone)
    return moment


@dataclass(slots=True)
class Tally:
    """What happened to one table's rows."""

    imported: int = 0
    existing: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self, what: str, *, dry_run: bool) -> str:
        verb = "would be imported" if dry_run else "imported"
        return (
            f"{what}: {self.imported} {verb}, {self.existing} imported before, "
            f"{len(self.problems)} skipped"
        )


def _columns(alias: str, table: str) -> list[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, table)]


def _select(alias: str, table: str, wanted: list[str], present: list[str]) -> str:
    quote = connections[alias].ops.quote_name
    names = ", ".join(quote(c) if c in present else f"NULL AS {quote(c)}" for c in wanted)
    return f"SELECT {names} FROM {quote(table)}"


# -- schedules ---------------------------------------------------------------------------

_SCHEDULE_COLUMNS = ["id", "name", "func", "hook", "args", "kwargs", "schedule_type", "minutes",
                     "repeats", "next_run", "cron", "task", "cluster",
                     "intended_date_kwarg"]  # fmt: skip


def _schedule_rows(alias: str) -> list[dict[str, Any]]:
    sql = _select(alias, SCHEDULE_TABLE, _SCHEDULE_COLUMNS, _columns(alias, SCHEDULE_TABLE))
    with connections[alias].cursor() as cursor:
        cursor.execute(sql + " ORDER BY id")
        return [dict(zip(_SCHEDULE_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def _converted(row: dict[str, Any]) -> Schedule:
    """The qdjango schedule a django-q schedule row becomes (not saved yet).

    Raises:
        ScheduleError: the row has no equivalent here; the message says why.
    """
    kind = row["schedule_type"]
    if kind in _NOT_OURS:
        raise ScheduleError(
            f"schedule type {kind!r} ({_NOT_OURS[kind]}) has no equivalent; "
            "create it again with a cron expression"
        )
    try:
        next_run = aware(row["next_run"])
    except ValueError as exc:
        raise ScheduleError(f"next_run: {exc}") from exc
    values = {**row, "next_run": next_run, "q_options": None}
    # django-q's scheduler takes async_task options from a "q_options" keyword;
    # here they have a column of their own, and a keyword would reach the function.
    parsed = engine_schedules.check_values(values)
    kwargs_text = row["kwargs"]
    options = parsed.kwargs.pop("q_options", None)
    if options is not None:
        if not isinstance(options, dict):
            raise ScheduleError(f"q_options must be a dict, not {options!r}")
        options = {k: v for k, v in options.items() if k not in _DROPPED_OPTIONS} or None
        kwargs_text = repr(parsed.kwargs) if parsed.kwargs else None
    return Schedule(
        name=row["name"] or None, func=row["func"], hook=row["hook"] or None,
        args=row["args"] or None, kwargs=kwargs_text or None, schedule_type=kind,
        minutes=row["minutes"], cron=row["cron"] or None, repeats=row["repeats"],
        next_run=next_run, cluster=row["cluster"] or None, task=row["task"] or None,
        q_options=options,
    )  # fmt: skip


def import_schedules(alias: str) -> Tally:
    """Copy django-q's schedules that were not imported before; the caller owns the transaction."""
    tally = Tally()
    done = set(
        MetaEntry.objects.using(alias)
        .filter(key__startswith=META_KEY.format(""))
        .values_list("key", flat=True)
    )
    for row in _schedule_rows(alias):
        key = META_KEY.format(row["id"])
        label = f"schedule {row['id']}" + (f" {row['name']!r}" if row["name"] else "")
        if key in done:
            tally.existing += 1
            continue
        if row["name"] and Schedule.objects.using(alias).filter(name=row["name"]).exists():
            tally.problems.append(f"{label}: a schedule with this name exists here already")
            continue
        try:
            item = _converted(row)
            with transaction.atomic(using=alias):
                item.save(using=alias)
                MetaEntry.objects.using(alias).create(key=key, value=str(item.pk))
        except (ScheduleError, DatabaseError) as exc:
            tally.problems.append(f"{label}: {exc}")
            continue
        tally.imported += 1
        if row["intended_date_kwarg"]:
            tally.notes.append(
                f"{label}: imported without intended_date_kwarg={row['intended_date_kwarg']!r}; "
                "qdjango does not pass the intended date, so the function gets no such keyword"
            )
    return tally


# -- tasks -------------------------------------------------------------------------------

_TASK_COLUMNS = ["id", "name", "func", "hook", "args", "kwargs", "result", "group", "started",
                 "stopped", "success", "attempt_count", "cluster"]  # fmt: skip


def _task_batches(alias: str) -> Iterator[list[dict[str, Any]]]:
    """The task rows by id, a batch at a time (keyset paging: no cursor held across writes)."""
    connection = connections[alias]
    sql = _select(alias, TASK_TABLE, _TASK_COLUMNS, _columns(alias, TASK_TABLE))
    quote = connection.ops.quote_name
    after = ""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"{sql} WHERE {quote('id')} > %s ORDER BY {quote('id')} LIMIT %s", [after, BATCH]
            )
            rows = [dict(zip(_TASK_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
        if not rows:
            return
        yield rows
        after = rows[-1]["id"]


def _task(row: dict[str, Any]) -> Task:
    """The qdjango task of a django-q task row.

    Raises:
        ValueError: a value cannot be converted; the message names the column.
    """
    if len(str(row["id"])) > 32:
        raise ValueError(f"id {row['id']!r} is longer than 32 characters")
    values: dict[str, Any] = {}
    for column in ("args", "kwargs", "result"):
        try:
            values[column] = decode_pickled(row[column])
        except ValueError as exc:
            raise ValueError(f"{column} {exc}") from exc
    return Task(
        id=str(row["id"]), name=row["name"], func=row["func"], hook=row["hook"] or None,
        group=row["group"] or None, started=aware(row["started"]), stopped=aware(row["stopped"]),
        success=bool(row["success"]), attempt_count=row["attempt_count"] or 0,
        cluster=row["cluster"] or None, **values,
    )  # fmt: skip


def import_tasks(alias: str) -> Tally:
    """Copy the finished tasks whose ids ``q_task`` lacks; the caller owns the transaction."""
    tally = Tally()
    for rows in _task_batches(alias):
        ids = [str(row["id"]) for row in rows]
        known = set(Task.objects.using(alias).filter(id__in=ids).values_list("id", flat=True))
        new: list[Task] = []
        for row in rows:
            if str(row["id"]) in known:
                tally.existing += 1
                continue
            try:
                new.append(_task(row))
            except ValueError as exc:
                tally.problems.append(f"task {row['id']} {row['name']!r}: {exc}")
        Task.objects.using(alias).bulk_create(new)
        tally.imported += len(new)
    return tally


def queued_count(alias: str) -> int:
    """Packages waiting in django-q's ORM broker table (0 when it has none or no such table)."""
    connection = connections[alias]
    if QUEUE_TABLE not in connection.introspection.table_names():
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(QUEUE_TABLE)}")
        return int(cursor.fetchone()[0])


class Command(BaseCommand):
    help = (
        "Import schedules (and with --tasks the task history) from django-q / django-q2 tables "
        "of the same database. Running it again imports nothing twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tasks", action="store_true", help="also import the finished tasks (django_q_task)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be imported; write nothing"
        )
        parser.add_argument(
            "--database",
            help="database alias holding both django-q's and qdjango's tables "
            "(default: where qdjango's tables are, Q_CLUSTER['store'] or the routers' choice)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"] or store_alias()
        if alias not in connections.settings:
            raise CommandError(f"no database {alias!r} in DATABASES")
        tables = set(connections[alias].introspection.table_names())
        wanted = [SCHEDULE_TABLE] + ([TASK_TABLE] if options["tasks"] else [])
        missing = [table for table in wanted if table not in tables]
        if missing:
            raise CommandError(
                f"database {alias!r} has no table {', '.join(missing)}: is this the database "
                "django-q used, and were its migrations applied?"
            )
        dry_run = options["dry_run"]
        with transaction.atomic(using=alias):
            # A dry run does all the work, checks included, then rolls it back: its figures
            # are the ones a real run would give.
            tallies = [("schedules", import_schedules(alias))]
            if options["tasks"]:
                tallies.append(("tasks", import_tasks(alias)))
            if dry_run:
                transaction.set_rollback(True, using=alias)
        for what, tally in tallies:
            self.stdout.write(tally.line(what, dry_run=dry_run))
        for _, tally in tallies:
            for problem in tally.problems[:SHOWN_PROBLEMS]:
                self.stderr.write(f"skipped {problem}")
            if len(tally.problems) > SHOWN_PROBLEMS:
                self.stderr.write(f"… and {len(tally.problems) - SHOWN_PROBLEMS} more skipped")
            for note in tally.notes:
                self.stderr.write(f"note: {note}")
        queued = queued_count(alias)
        if queued:
            self.stderr.write(
                f"note: {queued} task(s) still queued in {QUEUE_TABLE} are not imported: django-q "
                "signed them; let a django-q cluster finish them"
            )
        if dry_run:
            self.stdout.write("dry run: nothing was written")
