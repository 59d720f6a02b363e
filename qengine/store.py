"""The result store: saving outcomes and reading tasks and groups back, in SQL or the cache."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .cache import ResultCache, make_cache
from .config import Config
from .lite import Checkpointer, lite_file
from .signing import fast_dumps
from .task import PATH_LENGTH, Outcome, Task, func_name

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["ResultStore", "dumps", "embedded_secret", "loads", "task_from_values"]

log = logging.getLogger(__name__)


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


class ResultStore:
    """Tasks in ``q_task`` of a SQL database, plus the cache for ``cached=`` results.

    On one of the engine's own SQLite files, saving, pruning and looking up
    run on the driver (``qengine.lite``); everything else, and every other
    database, goes through SQLAlchemy (``qengine.store_sql``), imported on
    first use: a cluster on such a file never loads it.
    """

    def __init__(self, config: Config, cache: Callable[[], ResultCache] | None = None) -> None:
        """``cache`` gives the shared result cache (``qengine.runtime.get_cache``); without
        it the store makes its own on first use."""
        self.config = config
        self.url = config.store
        self._get_cache = cache
        self._own_cache: ResultCache | None = None
        self.lite_file = lite_file(self.url)
        """The store's own SQLite file on the driver (``qengine.lite``), else None."""

    @property
    def engine(self) -> Engine:
        """The store's SQLAlchemy engine; opened (and its tables created) on first use."""
        from .db import get_engine

        return get_engine(self.url)

    @property
    def _sql(self) -> ModuleType:
        from . import store_sql

        return store_sql

    @property
    def cache(self) -> ResultCache:
        if self._get_cache is not None:
            return self._get_cache()
        if self._own_cache is None:
            self._own_cache = make_cache(self.config)
        return self._own_cache

    def start_upkeep(self) -> Checkpointer | None:
        """What a process that writes many results here runs beside them (the cluster):
        for our own SQLite file, a thread that keeps its write-ahead log short, so that
        no result's commit pays for a checkpoint. Stop it with its ``stop()``. Either
        way the store is opened here, so that a cluster fails at its start, not at its
        first result."""
        if self.lite_file is None:
            self._sql.open_store(self.url)
            return None
        return self.lite_file.start_checkpointer()

    def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers (its tables created where the
        engine owns them): ``qcluster`` asks before it starts."""
        if self.lite_file is None:
            self._sql.open_store(self.url, check=True)
        else:
            self.lite_file.read("SELECT 1", (), "answer")

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
        if not rows:
            return
        if self.lite_file is not None:
            self.lite_file.save_tasks(list({row["id"]: row for row in rows}.values()))
        else:
            self._sql.save_rows(self.url, rows)

    def save_task(self, task: Task) -> None:
        """Save a ``Task`` object (``Task.save()``), with the same rules as outcomes."""
        rows = [_task_values(task)]
        self.save_rows(rows)
        self.prune_after(rows)

    def _keeps(self, outcome: Outcome) -> bool:
        if not outcome.success:
            return True
        save = outcome.message.save
        return save if save is not None else self.config.save_limit >= 0

    def prune_after(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep the newest ``save_limit`` successes, once ``rows`` (just saved) hold one."""
        if self.config.save_limit > 0 and any(row["success"] for row in rows):
            self.prune(self.config.save_limit)

    def prune(self, keep: int) -> int:
        """Delete the oldest successes beyond the newest ``keep``; return how many went."""
        if self.lite_file is not None:
            return self.lite_file.prune_tasks(keep)
        return int(self._sql.prune(self.url, keep))

    # -- reading -------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        """The task with this id, or else the newest with this name."""
        # One query for both look-ups: a waiter probes this while the task is still
        # running, and a miss by id would otherwise cost a second round trip.
        if self.lite_file is not None:
            row = self.lite_file.get_task(task_id)
        else:
            row = self._sql.get_task(self.url, task_id)
        return None if row is None else task_from_values(row)

    def group_tasks(self, group_id: str, failures: bool = True) -> list[Task]:
        return [task_from_values(r) for r in self._sql.group_rows(self.url, group_id, failures)]

    def group_results(self, group_id: str, failures: bool = False) -> list[Any]:
        return [loads(b) for b in self._sql.group_result_blobs(self.url, group_id, failures)]

    def group_count(self, group_id: str, failures: bool = False) -> int:
        """Finished tasks in the group; with ``failures`` only the failed ones (the spec's rule)."""
        return int(self._sql.group_count(self.url, group_id, failures))

    def delete_group(self, group_id: str, tasks: bool = False) -> int:
        """Remove the group label, or with ``tasks`` the group's tasks; return how many."""
        return int(self._sql.delete_group(self.url, group_id, tasks))

    def delete_task(self, task_id: str) -> bool:
        return bool(self._sql.delete_task(self.url, task_id))

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
        found = self._sql.list_rows(
            self.url, success=success, group=group, func_=func, limit=limit, offset=offset
        )
        return [task_from_values(row) for row in found]

    def count(self, *, success: bool | None = None, since: datetime | None = None) -> int:
        return int(self._sql.count(self.url, success=success, since=since))

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
        """The cached tasks of a group with their iter positions, in ``GROUP_ORDER``
        (enqueue order), as the store lists a group: ``cached`` changes where a group
        is read from, never the order its results come in."""
        ids = self.cache.members(self.group_key(group_id))
        blobs = self.cache.get_many([self.cache_key(i) for i in ids])
        parts = [loads(b) for b in blobs if b is not None]
        parts.sort(key=lambda p: (p[1].started or datetime.min.replace(tzinfo=UTC), p[1].id))
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
    from .store_sql import embedded_secret as kept_or_stored

    return kept_or_stored(url, candidate)
