"""The result store: saving outcomes and reading tasks and groups back, in SQL or the cache."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

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

from .cache import ResultCache, make_cache
from .config import Config, mask_url
from .db import (
    Checkpointer,
    MetaRow,
    TaskRow,
    checkpoint_in_background,
    direct_read,
    direct_sqlite,
    direct_write,
    get_engine,
    store_error,
    writing,
)
from .errors import StoreError
from .signing import fast_dumps
from .task import GROUP_ORDER, PATH_LENGTH, Outcome, Task, func_name

__all__ = ["ResultStore", "dumps", "embedded_secret", "loads", "task_from_values"]

log = logging.getLogger(__name__)

_PRUNE_CHUNK = 500


def dumps(value: Any) -> bytes:
    """Pickle a value for a binary column or the cache (lambdas and closures included)."""
    return fast_dumps(value)


_NO_ARGS = fast_dumps(())
_NO_KWARGS = fast_dumps({})


def _args_blob(args: Any) -> bytes:
    # Many tasks take no arguments, and every saved row pickles both: skip the pickler.
    return dumps(tuple(args)) if args else _NO_ARGS


def _kwargs_blob(kwargs: Any) -> bytes:
    return dumps(dict(kwargs)) if kwargs else _NO_KWARGS


def loads(blob: bytes | None) -> Any:
    """Unpickle a stored value: the store and cache are trusted, unlike packages in transit."""
    return None if blob is None else pickle.loads(blob)


def _stored_name(func: Any) -> str | None:
    """A function's name cut to its column's length.

    A callable's name can be long (a ``functools.partial`` shows its
    arguments); a row the database refuses would be retried for ever.
    """
    name = func_name(func)
    return None if name is None else name[:PATH_LENGTH]


def _task_values(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "func": _stored_name(task.func) or "",
        "hook": _stored_name(task.hook),
        "args": _args_blob(task.args),
        "kwargs": _kwargs_blob(task.kwargs),
        "result": dumps(task.result),
        "group": task.group,
        "started": task.started,
        "stopped": task.stopped,
        "success": task.success,
        "attempt_count": task.attempt_count,
        "cluster": task.cluster,
    }


def task_from_values(values: Mapping[str, Any]) -> Task:
    """The ``Task`` for a ``q_task`` row: read back, or as ``outcome_values`` made it."""
    return Task(
        **{
            **values,
            "args": loads(values["args"]) or (),
            "kwargs": loads(values["kwargs"]) or {},
            "result": loads(values["result"]),
        }
    )


def outcome_values(outcome: Outcome) -> dict[str, Any]:
    """The row for an outcome; the result stays the bytes the worker pickled."""
    message = outcome.message
    return {
        "id": message.id,
        "name": message.name,
        "func": _stored_name(message.func) or "",
        "hook": _stored_name(message.hook),
        "args": _args_blob(message.args),
        "kwargs": _kwargs_blob(message.kwargs),
        "result": outcome.result_blob,
        "group": message.group,
        "started": message.enqueued,
        "stopped": outcome.stopped,
        "success": outcome.success,
        "attempt_count": message.attempt_count,
        "cluster": message.cluster,
    }


def outcome_task(outcome: Outcome) -> Task:
    """The ``Task`` a hook or a cache sees for an outcome."""
    values = outcome_values(outcome)
    message = outcome.message
    values.update(
        func=func_name(message.func) or "",
        args=tuple(message.args),
        kwargs=dict(message.kwargs),
        result=loads(outcome.result_blob),
    )
    return Task(**values)


_key = bindparam("key")
_GET_TASK = (
    select(TaskRow.__table__)
    .where(or_(TaskRow.id == _key, TaskRow.name == _key))
    .order_by(case((TaskRow.id == _key, 0), else_=1), TaskRow.stopped.desc())
    .limit(1)
)
"""The task by id, or else the newest by that name: built once, it is polled often."""

_GROUP_COLUMNS = tuple(TaskRow.__table__.c[name] for name in GROUP_ORDER)
"""A group's tasks in enqueue order, not finish order (``qengine.task.GROUP_ORDER``)."""


@cache
def _upsert_statement(dialect: str) -> Any:
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
def _sqlite_prune() -> Any:
    """The whole prune in one statement, for the store's own SQLite files.

    With the default ``save_limit`` every saved batch is followed by a prune:
    a count, a select and a delete through a Connection held the monitor
    for ~0.5 ms (the round trip: 1.53 ms at ``save_limit`` 250 against 0.97
    at 0). The offset without a limit is SQLite's ``LIMIT -1 OFFSET``;
    MySQL refuses a limit inside ``IN``, so the others keep the three steps.
    """
    table = TaskRow.__table__
    beyond_newest = (
        select(table.c.id)
        .where(table.c.success.is_(True))
        .order_by(table.c.stopped.desc(), table.c.id.desc())
        .offset(bindparam("keep"))
    )
    return delete(table).where(table.c.id.in_(beyond_newest))


@cache
def _pg_batch_upsert() -> TextClause:
    """The whole batch in one statement on PostgreSQL: one array per column, ``unnest``-ed.

    ``executemany`` sends one INSERT per row, and a connection that binds on
    the client and never prepares (Django's default psycopg set-up, on which
    qdjango runs the store) makes PostgreSQL parse and plan each of them.
    This text does not change with the batch's size, so it is parsed once
    per batch, and prepared once where the driver prepares. Same rule as
    ``_upsert_statement``: a stored success is never overwritten.
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


class ResultStore:
    """Tasks in ``q_task`` of a SQL database, plus the cache for ``cached=`` results."""

    def __init__(self, config: Config, cache: Callable[[], ResultCache] | None = None) -> None:
        """``cache`` gives the shared result cache (``qengine.runtime.get_cache``); without
        it the store makes its own on first use."""
        self.config = config
        self.url = config.store
        self._get_cache = cache
        self._own_cache: ResultCache | None = None

    @property
    def engine(self) -> Engine:
        """The store's engine; opened (and its tables created) on first use, not before."""
        return get_engine(self.url)

    @property
    def cache(self) -> ResultCache:
        if self._get_cache is not None:
            return self._get_cache()
        if self._own_cache is None:
            self._own_cache = make_cache(self.config)
        return self._own_cache

    def _error(self, exc: SQLAlchemyError, action: str) -> StoreError:
        return store_error(self.url, action, exc)

    def start_upkeep(self) -> Checkpointer | None:
        """What a process that writes many results here runs beside them (the cluster):
        for our own SQLite file, a thread that keeps its write-ahead log short, so that
        no result's commit pays for a checkpoint. Stop it with its ``stop()``."""
        try:
            return checkpoint_in_background(self.url)
        except SQLAlchemyError as exc:
            raise self._error(exc, "open the store") from exc

    # -- writing -------------------------------------------------------------

    def save_outcomes(
        self, outcomes: Sequence[Outcome], *, prune: bool = True
    ) -> list[dict[str, Any]]:
        """Save a batch of outcomes in one transaction; return the rows written.

        Successes obey ``save``/``save_limit``; failures are always saved. A
        task id already stored as a success is never overwritten; a stored
        failure is updated by the new attempt. ``prune=False`` leaves the
        ``save_limit`` pruning to the caller (``prune_after``), so that waiters
        can be told of the saved rows first.
        """
        rows = self.rows_to_save(outcomes)
        self.save_rows(rows)
        if prune:
            self.prune_after(rows)
        return rows

    def rows_to_save(self, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
        """The rows ``save_outcomes`` writes: successes as ``save``/``save_limit`` say, failures."""
        return [outcome_values(o) for o in outcomes if self._keeps(o)]

    def save_rows(self, rows: list[dict[str, Any]]) -> None:
        """Write rows made by ``rows_to_save`` in one transaction (no pruning)."""
        if rows:
            self._upsert(rows)

    def save_task(self, task: Task) -> None:
        """Save a ``Task`` object (``Task.save()``), with the same rules as outcomes."""
        rows = [_task_values(task)]
        self._upsert(rows)
        self.prune_after(rows)

    def _keeps(self, outcome: Outcome) -> bool:
        if not outcome.success:
            return True
        save = outcome.message.save
        return save if save is not None else self.config.save_limit >= 0

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        # Last writer would win with a plain upsert; the spec wants a stored success to
        # stay, so look first and only overwrite failures. A racing insert of the same id
        # (two clusters) shows up as IntegrityError and is retried row by row.
        try:
            try:
                self._write(rows)
            except IntegrityError:
                for row in rows:  # the second look sees the racing row and updates it
                    self._write([row])
        except SQLAlchemyError as exc:
            raise self._error(exc, "save results") from exc

    def prune_after(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep the newest ``save_limit`` successes, once ``rows`` (just saved) hold one."""
        if self.config.save_limit > 0 and any(row["success"] for row in rows):
            self.prune(self.config.save_limit)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        by_id = {row["id"]: row for row in rows}
        engine = self.engine
        if engine.dialect.name == "postgresql" and len(by_id) > 1:
            columns = [c.name for c in TaskRow.__table__.c]
            arrays = {name: [row[name] for row in by_id.values()] for name in columns}
            with writing(engine) as conn:
                conn.execute(_pg_batch_upsert(), arrays)
            return
        upsert = _upsert_statement(engine.dialect.name)
        if upsert is not None and direct_sqlite(engine):
            direct_write(engine, upsert, list(by_id.values()))
            return
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

    def prune(self, keep: int) -> int:
        """Delete the oldest successes beyond the newest ``keep``; return how many went."""
        try:
            if direct_sqlite(self.engine):
                return direct_write(self.engine, _sqlite_prune(), [{"keep": keep}])
            with writing(self.engine) as conn:
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
        except SQLAlchemyError as exc:
            raise self._error(exc, "prune old results") from exc

    # -- reading -------------------------------------------------------------

    def _tasks(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Task]:
        try:
            with self.engine.connect() as conn:
                return [task_from_values(row._mapping) for row in conn.execute(stmt, params)]
        except SQLAlchemyError as exc:
            raise self._error(exc, "read tasks") from exc

    def get(self, task_id: str) -> Task | None:
        """The task with this id, or else the newest with this name."""
        # One query for both look-ups: a waiter probes this while the task is still
        # running, and a miss by id would otherwise cost a second round trip.
        try:
            engine = self.engine
            if direct_sqlite(engine):
                rows = direct_read(engine, _GET_TASK, {"key": task_id})
                return task_from_values(rows[0]) if rows else None
        except SQLAlchemyError as exc:
            raise self._error(exc, "read tasks") from exc
        tasks = self._tasks(_GET_TASK, {"key": task_id})
        return tasks[0] if tasks else None

    def _group_filter(self, group_id: str, failures: bool) -> list[Any]:
        where = [TaskRow.group == group_id]
        if not failures:
            where.append(TaskRow.success.is_(True))
        return where

    def group_tasks(self, group_id: str, failures: bool = True) -> list[Task]:
        stmt = (
            select(TaskRow.__table__)
            .where(*self._group_filter(group_id, failures))
            .order_by(*_GROUP_COLUMNS)
        )
        return self._tasks(stmt)

    def group_results(self, group_id: str, failures: bool = False) -> list[Any]:
        stmt = (
            select(TaskRow.result)
            .where(*self._group_filter(group_id, failures))
            .order_by(*_GROUP_COLUMNS)
        )
        try:
            with self.engine.connect() as conn:
                return [loads(blob) for blob in conn.scalars(stmt)]
        except SQLAlchemyError as exc:
            raise self._error(exc, "read group results") from exc

    def group_count(self, group_id: str, failures: bool = False) -> int:
        """Finished tasks in the group; with ``failures`` only the failed ones (the spec's rule)."""
        where = [TaskRow.group == group_id]
        if failures:
            where.append(TaskRow.success.is_(False))
        try:
            with self.engine.connect() as conn:
                return int(conn.scalar(select(func.count()).where(*where)) or 0)
        except SQLAlchemyError as exc:
            raise self._error(exc, "count a group") from exc

    def delete_group(self, group_id: str, tasks: bool = False) -> int:
        """Remove the group label, or with ``tasks`` the group's tasks; return how many."""
        stmt: Any = delete(TaskRow) if tasks else update(TaskRow).values(group=None)
        try:
            with writing(self.engine) as conn:
                return int(conn.execute(stmt.where(TaskRow.group == group_id)).rowcount)
        except SQLAlchemyError as exc:
            raise self._error(exc, "delete a group") from exc

    def delete_task(self, task_id: str) -> bool:
        try:
            with writing(self.engine) as conn:
                return bool(conn.execute(delete(TaskRow).where(TaskRow.id == task_id)).rowcount)
        except SQLAlchemyError as exc:
            raise self._error(exc, "delete a task") from exc

    def list_tasks(
        self,
        *,
        success: bool | None = None,
        group: str | None = None,
        func: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        """Newest first, optionally filtered; for monitors and scripts."""
        stmt = select(TaskRow.__table__)
        if success is not None:
            stmt = stmt.where(TaskRow.success.is_(success))
        if group is not None:
            stmt = stmt.where(TaskRow.group == group)
        if func is not None:
            stmt = stmt.where(TaskRow.func == func)
        stmt = stmt.order_by(TaskRow.stopped.desc(), TaskRow.id).limit(limit).offset(offset)
        return self._tasks(stmt)

    def count(self, *, success: bool | None = None, since: datetime | None = None) -> int:
        stmt = select(func.count()).select_from(TaskRow)
        if success is not None:
            stmt = stmt.where(TaskRow.success.is_(success))
        if since is not None:
            stmt = stmt.where(TaskRow.stopped >= since)
        try:
            with self.engine.connect() as conn:
                return int(conn.scalar(stmt) or 0)
        except SQLAlchemyError as exc:
            raise self._error(exc, "count tasks") from exc

    # -- cached results --------------------------------------------------------

    def cache_key(self, task_id: str) -> str:
        return f"qengine:{self.config.name}:result:{task_id}"

    def group_key(self, group_id: str) -> str:
        return f"qengine:{self.config.name}:group:{group_id}"

    def cache_task(self, task: Task, timeout: int | None, index: int | None = None) -> int:
        """Put a task in the cache and its id in its group's set; return the group's size.

        ``index`` is an iter part's position, kept beside the task for collation.
        """
        self.cache.set(self.cache_key(task.id), dumps((index, task)), timeout)
        if task.group:
            return self.cache.add_member(self.group_key(task.group), task.id, timeout)
        return 0

    def cached(self, task_id: str) -> Task | None:
        blob = self.cache.get(self.cache_key(task_id))
        return loads(blob)[1] if blob is not None else None

    def cached_parts(self, group_id: str) -> list[tuple[int | None, Task]]:
        """The cached tasks of a group with their iter positions, oldest first."""
        ids = self.cache.members(self.group_key(group_id))
        blobs = self.cache.get_many([self.cache_key(i) for i in ids])
        parts = [loads(b) for b in blobs if b is not None]
        parts.sort(key=lambda p: (p[1].stopped or datetime.min.replace(tzinfo=UTC), p[1].id))
        return parts

    def cached_group(self, group_id: str, failures: bool = True) -> list[Task]:
        return [t for _, t in self.cached_parts(group_id) if failures or t.success]

    def delete_cached_group(self, group_id: str, tasks: bool = False) -> int:
        ids = self.cache.members(self.group_key(group_id))
        keys = [self.group_key(group_id)]
        if tasks:
            keys += [self.cache_key(i) for i in ids]
        self.cache.delete(*keys)
        return len(ids)

    def delete_cached(self, task_id: str) -> None:
        self.cache.delete(self.cache_key(task_id))


def embedded_secret(url: str, candidate: str) -> str:
    """The signing secret kept in the embedded SQLite file, stored there on first use.

    Only for the zero-configuration default: anyone who can read the file
    can read the key, which is acceptable for one machine and nothing else.
    """
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
