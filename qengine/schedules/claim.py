"""The scheduler thread's transaction: claim due schedules, enqueue each slot once, move them on.

The cluster's scheduler thread calls ``claim_due`` and ``seconds_until_due``
and names each run's task with ``slot_task_id``; the thread itself lives in
``qengine.cluster.scheduler``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, RowMapping, delete, func, or_, select, update

from .model import Schedule, _from_row
from .recurrence import Advance, advance
from .rows import _table

__all__ = ["Claim", "Enqueue", "claim_due", "seconds_until_due", "slot_task_id"]

log = logging.getLogger(__name__)

_LOCKING_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})

_SLOT_IDS = uuid.UUID("5f0c6a52-6c1e-4b8e-9a57-0f1f4e2d7c31")
"""Namespace of the task ids of schedule runs (uuid5)."""


def slot_task_id(cluster_name: str, schedule_id: int | None, slot: datetime) -> str:
    """The task id of one run of a schedule: the same every time that slot is enqueued.

    So an enqueue repeated after a claim failed to commit is recognised by
    the broker instead of running the slot twice.
    """
    return uuid.uuid5(_SLOT_IDS, f"{cluster_name}:{schedule_id}:{slot.isoformat()}").hex


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
