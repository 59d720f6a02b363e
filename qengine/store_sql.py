"""The result store in SQLAlchemy: every database, and what ``qengine.lite`` does not do.

``qengine.store.ResultStore`` loads this module when it first needs it, so
that a process whose store is one of the engine's own SQLite files and which
only saves, prunes and looks up results (a cluster) never imports SQLAlchemy.
Every function turns SQLAlchemy's errors into ``StoreError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    Engine,
    TextClause,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .config import mask_url
from .db import MetaRow, TaskRow, get_engine, store_error, writing
from .task import GROUP_ORDER

log = logging.getLogger(__name__)

_PRUNE_CHUNK = 500

T = TypeVar("T")


def _guarded(url: str, action: str, work: Callable[[], T]) -> T:
    try:
        return work()
    except SQLAlchemyError as exc:
        raise store_error(url, action, exc) from exc


_key = bindparam("key")
GET_TASK = (
    select(TaskRow.__table__)
    .where(or_(TaskRow.id == _key, TaskRow.name == _key))
    .order_by(case((TaskRow.id == _key, 0), else_=1), TaskRow.stopped.desc())
    .limit(1)
)
"""The task by id, or else the newest by that name: built once, it is polled often."""

_GROUP_COLUMNS = tuple(TaskRow.__table__.c[name] for name in GROUP_ORDER)
"""A group's tasks in enqueue order, not finish order (``qengine.task.GROUP_ORDER``)."""


@cache
def upsert_statement(dialect: str) -> Any:
    """One ``INSERT … ON CONFLICT`` that keeps a stored success, where the database has it.

    Every result is saved: one statement instead of a look-up, an insert
    and updates makes it several times cheaper, and atomic when two
    clusters race for the same id. Other databases take the
    look-then-write path.
    """
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return None
    table = TaskRow.__table__
    stmt = dialect_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={c.name: stmt.excluded[c.name] for c in table.c if c.name != "id"},
        where=table.c.success.is_(False),
    )
    return stmt


@cache
def _pg_batch_upsert() -> TextClause:
    """The whole batch in one statement on PostgreSQL: one array per column, ``unnest``-ed.

    ``executemany`` sends one INSERT per row, and a connection that binds on
    the client and never prepares (Django's default psycopg set-up, on which
    qdjango runs the store) makes PostgreSQL parse and plan each of them.
    This text does not change with the batch's size, so it is parsed once
    per batch, and prepared once where the driver prepares. Same rule as
    ``upsert_statement``: a stored success is never overwritten.
    """
    from sqlalchemy.dialects import postgresql  # here: 2.3 MB a SQLite store need not hold

    dialect = postgresql.dialect()
    quote = dialect.identifier_preparer.quote
    table = TaskRow.__table__
    names = [c.name for c in table.c]
    arrays = ", ".join(f"CAST(:{c.name} AS {c.type.compile(dialect=dialect)}[])" for c in table.c)
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != "id")
    return text(
        f"INSERT INTO {table.name} ({', '.join(quote(n) for n in names)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE {table.name}.success IS false"
    )


def open_store(url: str, *, check: bool = False) -> None:
    """Open the store (and create its tables where the engine owns them), failing early;
    with ``check`` also run a statement on it."""

    def work() -> None:
        engine = get_engine(url)
        if check:
            with engine.connect() as conn:
                conn.execute(select(1))

    _guarded(url, "answer" if check else "open the store", work)


def save_rows(url: str, rows: list[dict[str, Any]]) -> None:
    """Upsert ``q_task`` rows in one transaction; a stored success is never overwritten."""

    # A racing insert of the same id (two clusters) on the look-then-write path shows up
    # as IntegrityError and is retried row by row: the second look sees the racing row.
    def work() -> None:
        try:
            _write(get_engine(url), rows)
        except IntegrityError:
            for row in rows:
                _write(get_engine(url), [row])

    _guarded(url, "save results", work)


def _write(engine: Engine, rows: list[dict[str, Any]]) -> None:
    by_id = {row["id"]: row for row in rows}
    if engine.dialect.name == "postgresql" and len(by_id) > 1:
        columns = [c.name for c in TaskRow.__table__.c]
        arrays = {name: [row[name] for row in by_id.values()] for name in columns}
        with writing(engine) as conn:
            conn.execute(_pg_batch_upsert(), arrays)
        return
    upsert = upsert_statement(engine.dialect.name)
    if upsert is not None:
        with writing(engine) as conn:
            conn.execute(upsert, list(by_id.values()))
        return
    with writing(engine) as conn:
        found = conn.execute(select(TaskRow.id, TaskRow.success).where(TaskRow.id.in_(by_id)))
        stored = dict(found.all())
        new = [row for key, row in by_id.items() if key not in stored]
        if new:
            conn.execute(insert(TaskRow), new)
        for key, success in stored.items():
            if success:
                continue
            row = by_id[key]
            conn.execute(
                update(TaskRow)
                .where(TaskRow.id == key, TaskRow.success.is_(False))
                .values({k: v for k, v in row.items() if k != "id"})
            )


def prune(url: str, keep: int) -> int:
    """Delete the oldest successes beyond the newest ``keep``; return how many went."""

    def work() -> int:
        with writing(get_engine(url)) as conn:
            count = conn.scalar(select(func.count()).where(TaskRow.success.is_(True)))
            excess = (count or 0) - keep
            if excess <= 0:
                return 0
            old = conn.scalars(
                select(TaskRow.id)
                .where(TaskRow.success.is_(True))
                .order_by(TaskRow.stopped, TaskRow.id)
                .limit(excess)
            ).all()
            for start in range(0, len(old), _PRUNE_CHUNK):
                chunk = old[start : start + _PRUNE_CHUNK]
                conn.execute(delete(TaskRow).where(TaskRow.id.in_(chunk)))
            return len(old)

    return _guarded(url, "prune old results", work)


def rows(url: str, stmt: Any, params: dict[str, Any] | None = None) -> list[Mapping[str, Any]]:
    """``stmt``'s rows as mappings by column name."""

    def work() -> list[Mapping[str, Any]]:
        with get_engine(url).connect() as conn:
            return [row._mapping for row in conn.execute(stmt, params)]

    return _guarded(url, "read tasks", work)


def get_task(url: str, key: str) -> Mapping[str, Any] | None:
    found = rows(url, GET_TASK, {"key": key})
    return found[0] if found else None


def _group_filter(group_id: str, failures: bool) -> list[Any]:
    where = [TaskRow.group == group_id]
    if not failures:
        where.append(TaskRow.success.is_(True))
    return where


def group_rows(url: str, group_id: str, failures: bool) -> list[Mapping[str, Any]]:
    stmt = (
        select(TaskRow.__table__)
        .where(*_group_filter(group_id, failures))
        .order_by(*_GROUP_COLUMNS)
    )
    return rows(url, stmt)


def group_result_blobs(url: str, group_id: str, failures: bool) -> list[bytes | None]:
    stmt = (
        select(TaskRow.result).where(*_group_filter(group_id, failures)).order_by(*_GROUP_COLUMNS)
    )

    def work() -> list[bytes | None]:
        with get_engine(url).connect() as conn:
            return list(conn.scalars(stmt))

    return _guarded(url, "read group results", work)


def group_count(url: str, group_id: str, failures: bool) -> int:
    where = [TaskRow.group == group_id]
    if failures:
        where.append(TaskRow.success.is_(False))

    def work() -> int:
        with get_engine(url).connect() as conn:
            return int(conn.scalar(select(func.count()).where(*where)) or 0)

    return _guarded(url, "count a group", work)


def delete_group(url: str, group_id: str, tasks: bool) -> int:
    stmt: Any = delete(TaskRow) if tasks else update(TaskRow).values(group=None)

    def work() -> int:
        with writing(get_engine(url)) as conn:
            return int(conn.execute(stmt.where(TaskRow.group == group_id)).rowcount)

    return _guarded(url, "delete a group", work)


def delete_task(url: str, task_id: str) -> bool:
    def work() -> bool:
        with writing(get_engine(url)) as conn:
            return bool(conn.execute(delete(TaskRow).where(TaskRow.id == task_id)).rowcount)

    return _guarded(url, "delete a task", work)


def list_rows(
    url: str, *, success: bool | None, group: str | None, func_: str | None, limit: int,
    offset: int,
) -> list[Mapping[str, Any]]:  # fmt: skip
    stmt = select(TaskRow.__table__)
    if success is not None:
        stmt = stmt.where(TaskRow.success.is_(success))
    if group is not None:
        stmt = stmt.where(TaskRow.group == group)
    if func_ is not None:
        stmt = stmt.where(TaskRow.func == func_)
    stmt = stmt.order_by(TaskRow.stopped.desc(), TaskRow.id).limit(limit).offset(offset)
    return rows(url, stmt)


def count(url: str, *, success: bool | None, since: datetime | None) -> int:
    stmt = select(func.count()).select_from(TaskRow)
    if success is not None:
        stmt = stmt.where(TaskRow.success.is_(success))
    if since is not None:
        stmt = stmt.where(TaskRow.stopped >= since)

    def work() -> int:
        with get_engine(url).connect() as conn:
            return int(conn.scalar(stmt) or 0)

    return _guarded(url, "count tasks", work)


def embedded_secret(url: str, candidate: str) -> str:
    """See ``qengine.store.embedded_secret``."""
    engine = get_engine(url)
    with engine.connect() as conn:
        kept = conn.scalar(select(MetaRow.value).where(MetaRow.key == "secret_key"))
    if kept:
        return str(kept)
    try:
        with writing(engine) as conn:
            conn.execute(insert(MetaRow), {"key": "secret_key", "value": candidate})
        log.warning(
            "no secret_key configured: generated one and kept it in %s; "
            "set secret_key before using any broker other than this local file",
            mask_url(url),
        )
        return candidate
    except IntegrityError:  # another process stored one first: use theirs
        with engine.connect() as conn:
            return str(conn.scalar(select(MetaRow.value).where(MetaRow.key == "secret_key")))


__all__ = [
    "GET_TASK", "count", "delete_group", "delete_task", "embedded_secret", "get_task",
    "group_count", "group_result_blobs", "group_rows", "list_rows", "open_store", "prune",
    "rows", "save_rows", "upsert_statement",
]  # fmt: skip
