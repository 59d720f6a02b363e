"""The task message that travels in a package, a worker's outcome, and the stored ``Task``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import coolname
import coolname.loader

if TYPE_CHECKING:
    from .store import ResultStore

__all__ = [
    "GROUP_ORDER",
    "NAME_LENGTH",
    "PATH_LENGTH",
    "Failure",
    "Outcome",
    "Success",
    "Task",
    "TaskMessage",
    "func_name",
    "new_id",
    "storable",
]

MESSAGE_VERSION = 1

PATH_LENGTH = 256
"""Longest function or hook path the store keeps (``q_task`` and ``q_schedule`` columns)."""
NAME_LENGTH = 100
"""Longest task name, group, cluster name or schedule name the store keeps."""

GROUP_ORDER = ("started", "id")
"""The columns a group's tasks are listed by: enqueue order, whatever order they finished in.

``started`` is when a task was enqueued; the id breaks ties. The store's
group queries and qdjango's ``fetch_group`` and ``Task.get_task_group`` all
sort by these, so every API lists a group alike.
"""


def storable(text: str, length: int) -> bool:
    """Whether ``text`` fits a column of ``length``: PostgreSQL text refuses NUL characters too.

    Checked where the text comes in: a row the database refuses would be
    retried, batch after batch.
    """
    return len(text) <= length and "\0" not in text


def new_id() -> tuple[str, str]:
    """A fresh task id and a human-readable name to go with it.

    The id is a version 7 UUID (RFC 9562) in hex: the Unix time in
    milliseconds, then 74 random bits. Ids made later sort later, so the
    store's primary-key index grows at its end; random (version 4) ids
    touched a random page of it for every saved result, which made each
    SQLite insert about twice as slow once the store held 100,000 results,
    and costs PostgreSQL and InnoDB b-trees alike. Built from bytes, without
    a ``UUID`` object: every ``async_task`` pays for this.

    The name is spelled from the id's own random bits (``fetch`` finds a
    task by either): ``coolname.generate_slug`` cost ~4 µs a call, a quarter
    of what ``async_tasks`` spends per task.
    """
    raw = bytearray(os.urandom(16))
    raw[0:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    return raw.hex(), _name(int.from_bytes(raw[9:16], "big"))


def _name(bits: int) -> str:
    """Four words (adjective, adjective, animal, "of" noun) picked by 56 random bits."""
    words = _name_words()
    if words is None:
        return coolname.generate_slug(4)
    adjective, animal, noun = words
    bits, a = divmod(bits, len(adjective))
    bits, b = divmod(bits, len(adjective) - 1)
    bits, c = divmod(bits, len(animal))
    b += b >= a  # never the same adjective twice
    return f"{adjective[a]}-{adjective[b]}-{animal[c]}-of-{noun[bits % len(noun)]}"


@cache
def _name_words() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """coolname's adjectives, animals and nouns (~4 x 10^10 names); None if its data moved.

    The names are a convenience beside the id: a coolname release that moved
    its lists only sends the names back to ``generate_slug``.
    """
    try:
        config = coolname.loader.load_config(Path(coolname.__file__).parent / "data")
        adjectives, animals, nouns = (
            tuple(w for w in config[key]["words"] if w.isalpha() and w.islower())
            for key in ("adjective", "animal", "of_noun")
        )
    except Exception as exc:  # any surprise in a third party's data files
        logging.getLogger(__name__).debug("coolname's word lists not usable: %r", exc)
        return None
    if min(len(adjectives), len(animals), len(nouns)) < 100:
        return None
    return adjectives, animals, nouns


def func_name(func: str | Callable[..., Any] | None) -> str | None:
    """How a function is recorded in the store: its dotted path."""
    if func is None or isinstance(func, str):
        return func
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return f"{module}.{qualname or repr(func)}"


@dataclass(slots=True, kw_only=True)
class TaskMessage:
    """Everything a worker needs to run a task and the monitor needs to finish it.

    Versioned so that later fields (ETA, priority, retry policy) can be added
    while clusters still read packages made by older callers.
    """

    id: str
    name: str
    func: str | Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    hook: str | Callable[..., Any] | None = None
    group: str | None = None
    timeout: float | None = None
    save: bool | None = None
    cached: bool | int = False
    ack_failure: bool | None = None
    sync: bool = False
    chain: list[tuple[Any, ...]] | None = None
    """Links still to run after this one, each ``(func, args, kwargs)``."""
    iter_count: int | None = None
    """Set on the parts of an ``async_iter``: how many results to collate under ``group``."""
    iter_cached: bool | int | None = None
    """Where the collated iter result goes: cache (True/seconds) or store (None/False)."""
    iter_index: int | None = None
    """Position of this part's arguments, so collated results keep the order of the iterable."""
    attempt_count: int = 0
    """Deliveries so far, including the current one; filled in by the cluster."""
    enqueued: datetime = field(default_factory=lambda: datetime.now(UTC))
    cluster: str | None = None
    version: int = MESSAGE_VERSION

    def __getitem__(self, key: str) -> Any:
        # django_q handed receivers a dict; let ``task["name"]`` keep working.
        return getattr(self, key)

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], TaskMessage], tuple[dict[str, Any]]]:
        # Every async_task pickles one message, so its form is kept lean: only the fields
        # that differ from their defaults, by name (a later version's fields stay
        # optional), and ``enqueued`` as a POSIX timestamp, since an aware datetime
        # alone pickles slower than the rest of the message together.
        state: dict[str, Any] = {"id": self.id, "name": self.name, "func": self.func}
        for name, default in _OPTIONAL_DEFAULTS:
            value = getattr(self, name)
            if value is not default and value != default:
                state[name] = value
        if self.kwargs:
            state["kwargs"] = self.kwargs
        state["enqueued"] = self.enqueued.timestamp()
        return _message_from, (state,)


def _message_from(state: dict[str, Any]) -> TaskMessage:
    """Rebuild a message pickled by ``TaskMessage.__reduce__``."""
    state["enqueued"] = datetime.fromtimestamp(state["enqueued"], UTC)
    return TaskMessage(**state)


_OPTIONAL_DEFAULTS = tuple(
    (key.name, key.default) for key in fields(TaskMessage) if key.default is not MISSING
)
"""``(name, default)`` of the fields a message pickles only when they differ from it."""


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What running a task produced, as the worker hands it to the monitor.

    ``result_blob`` is the result already pickled in the worker, so the
    parent process stores it without unpickling and pickling it again.
    """

    message: TaskMessage
    success: bool
    result_blob: bytes
    started: datetime
    stopped: datetime
    pid: int = 0
    rss_kb: int = 0
    timed_out: bool = False


@dataclass(slots=True, kw_only=True)
class Task:
    """A finished task as stored: the spec's ``Task`` with its group helpers.

    ``started`` is when the task was enqueued and ``stopped`` when it
    finished, so ``time_taken()`` includes time spent waiting in the queue.
    """

    id: str
    name: str
    func: str
    hook: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    group: str | None = None
    started: datetime | None = None
    stopped: datetime | None = None
    success: bool = False
    attempt_count: int = 0
    cluster: str | None = None

    def __str__(self) -> str:
        return self.name or self.id

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def time_taken(self) -> float:
        """Seconds between enqueueing and finishing."""
        if self.started is None or self.stopped is None:
            return 0.0
        return (self.stopped - self.started).total_seconds()

    def group_result(self, failures: bool = False) -> list[Any] | None:
        if self.group:
            return _store().group_results(self.group, failures=failures)
        return None

    def group_count(self, failures: bool = False) -> int | None:
        if self.group:
            return _store().group_count(self.group, failures=failures)
        return None

    def group_delete(self, tasks: bool = False) -> int | None:
        if self.group:
            return _store().delete_group(self.group, tasks=tasks)
        return None

    def save(self) -> None:
        """Write this task to the store (e.g. to keep a result fetched from the cache)."""
        _store().save_task(self)

    # The spec's classmethods, against the current configuration's store.

    @classmethod
    def get_result(cls, task_id: str) -> Any:
        task = _store().get(task_id)
        return task.result if task else None

    @classmethod
    def get_result_group(cls, group_id: str, failures: bool = False) -> list[Any]:
        return _store().group_results(group_id, failures=failures)

    @classmethod
    def get_task(cls, task_id: str) -> Task | None:
        return _store().get(task_id)

    @classmethod
    def get_task_group(cls, group_id: str, failures: bool = True) -> list[Task]:
        return _store().group_tasks(group_id, failures=failures)

    @classmethod
    def get_group_count(cls, group_id: str, failures: bool = False) -> int:
        return _store().group_count(group_id, failures=failures)

    @classmethod
    def delete_group(cls, group_id: str, objects: bool = False) -> int:
        return _store().delete_group(group_id, tasks=objects)


class Success(Task):
    """The stored tasks that succeeded."""

    __slots__ = ()

    @classmethod
    def list(cls, limit: int = 100, **filters: Any) -> list[Task]:
        return _store().list_tasks(success=True, limit=limit, **filters)


class Failure(Task):
    """The stored tasks that failed."""

    __slots__ = ()

    @classmethod
    def list(cls, limit: int = 100, **filters: Any) -> list[Task]:
        return _store().list_tasks(success=False, limit=limit, **filters)


_store_locator: Callable[[], ResultStore] | None = None


def set_store_locator(locator: Callable[[], ResultStore]) -> None:
    """Let ``Task``'s queries find the current store.

    The store builds ``Task`` objects, so this module cannot import it; the
    runtime, which owns the current configuration, installs the locator.
    """
    global _store_locator
    _store_locator = locator


def _store() -> ResultStore:
    if _store_locator is None:
        raise RuntimeError(
            "Task queries need the engine's runtime: import qengine.runtime (importing "
            "Task from qengine, not qengine.task, does this)"
        )
    return _store_locator()
