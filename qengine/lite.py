"""The store's own SQLite files on the ``sqlite3`` driver alone, without SQLAlchemy.

Why: a cluster on a Redis broker with the default SQLite store runs only a
few statements on its store: save a batch of results, prune to
``save_limit``, look a task up, ask when the next schedule is due, and
checkpoint the write-ahead log. Importing SQLAlchemy for them cost every
such cluster about 13 MB (a fifth of its memory), and a Connection cost
each save 160-260 µs against 80-95 µs here. So these statements run here,
with the SQL SQLAlchemy compiles for the same statements and the same
value conversions (``tests/qengine/test_lite.py`` holds both equal); every
other use of the store loads SQLAlchemy when it first needs it
(``qengine.store_sql``). A file that lacks the engine's tables gets them
from SQLAlchemy's ``create_all``, in a short-lived child process when this
one has not loaded SQLAlchemy.

Only for files the engine opens itself (``sqlite:///path``): not in memory,
not URI filenames, not a framework's connection (``django://``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from .config import mask_url
from .errors import StoreError

__all__ = [
    "Checkpointer", "LiteFile", "close_engine_connections", "lite_file", "own_file",
    "store_failure",
]  # fmt: skip

log = logging.getLogger(__name__)

TABLES = ("q_task", "q_schedule", "q_queue", "q_cache", "q_stat", "q_meta")
"""The engine's tables (``qengine.db.Base.metadata``); a file missing any gets them all."""

TASK_COLUMNS = (
    "id", "name", "func", "hook", "args", "kwargs", "result", "group",
    "started", "stopped", "success", "attempt_count", "cluster",
)  # fmt: skip
"""``q_task``'s columns in table order: the order of the rows' values below."""

_COLUMN_LIST = ", ".join('"group"' if c == "group" else c for c in TASK_COLUMNS)

UPSERT_SQL = (
    f"INSERT INTO q_task ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(TASK_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(
        f'"{c}" = excluded."{c}"' if c == "group" else f"{c} = excluded.{c}"
        for c in TASK_COLUMNS[1:]
    )
    + " WHERE q_task.success IS 0"
)
"""A result's save: insert, or overwrite a stored failure; a stored success stays."""

PRUNE_SQL = (
    "DELETE FROM q_task WHERE q_task.id IN (SELECT q_task.id FROM q_task "
    "INDEXED BY ix_q_task_stopped WHERE q_task.success IS 1 "
    "ORDER BY q_task.stopped DESC, q_task.id DESC LIMIT -1 OFFSET ?)"
)
"""Every success beyond the newest ``keep``, in one statement.

It walks the successes newest first by ``ix_q_task_stopped``: left to
itself SQLite picks ``ix_q_task_success`` and sorts every success in a
temporary B-tree to skip the newest, which was half of each prune's time.
"""

GET_SQL = (
    f"SELECT {_COLUMN_LIST} FROM q_task WHERE q_task.id = ?1 OR q_task.name = ?1 "
    "ORDER BY CASE WHEN (q_task.id = ?1) THEN 0 ELSE 1 END, q_task.stopped DESC LIMIT 1"
)
"""The task by id, or else the newest by that name, in one look-up."""

NEXT_DUE_SQL = (
    "SELECT min(q_schedule.next_run) FROM q_schedule WHERE q_schedule.repeats != 0 "
    "AND (q_schedule.cluster IS NULL OR q_schedule.cluster = ?)"
)
"""When this cluster's next schedule is due (``qengine.schedules.seconds_until_due``)."""

CHECKPOINT_EVERY_S = 0.25
"""How often a ``Checkpointer`` copies the write-ahead log back into the database."""

FALLBACK_CHECKPOINT_PAGES = 20_000
"""Where a writer checkpoints by itself, should the ``Checkpointer`` fall behind (~80 MB)."""

WAL_LIMIT_BYTES = 16 * 2**20
"""What a write-ahead log is cut back to once it restarts (``journal_size_limit``)."""

TRUNCATE_WAIT_MS = 5
"""How long that truncation waits for readers and writers before it gives up for the round."""

TRUNCATE_FROM_PAGES = 4_096
"""A log this long (~16 MB) has the ``Checkpointer`` try to empty it (``TRUNCATE``)."""

_checkpointed: set[str] = set()
"""Files (absolute paths) whose write-ahead log a ``Checkpointer`` of this process keeps short."""


def is_checkpointed(path: str) -> bool:
    """Whether a ``Checkpointer`` of this process looks after the file at ``path``; its
    connections (SQLAlchemy's too, ``qengine.db``) then leave checkpoints to it."""
    return os.path.abspath(path) in _checkpointed


def own_file(url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL the engine opens itself, else None.

    Read as SQLAlchemy reads such URLs (the path percent-decoded, relative
    to the working directory); anything else — memory, a query string, a URI
    filename, another scheme — is left to SQLAlchemy.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in {"sqlite", "sqlite+pysqlite"} or not rest.startswith("/") or "?" in rest:
        return None
    path = unquote(rest[1:])
    if path in {"", ":memory:"} or path.startswith("file:"):
        return None
    return path


def store_failure(url: str, action: str, reason: str, unreachable: bool) -> StoreError:
    """Our error for a failed statement on the store at ``url``, in one line."""
    text = f"result store {mask_url(url)} failed to {action}: {' '.join(reason.split())}"
    if unreachable:
        text += "; check that the database server is running there and that 'store' names it"
    return StoreError(text)


# -- values, converted as the tables' SQLAlchemy types convert them ------------------


def _utc_text(value: datetime | None) -> str | None:
    """``UTCDateTime`` on SQLite: aware in, naive UTC text with microseconds out."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given where an aware one is needed")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _utc(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def task_params(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A ``q_task`` row's values in column order, as the driver takes them."""
    success = row["success"]
    return (
        row["id"], row["name"], row["func"], row["hook"], row["args"], row["kwargs"],
        row["result"], row["group"], _utc_text(row["started"]), _utc_text(row["stopped"]),
        None if success is None else int(success), row["attempt_count"], row["cluster"],
    )  # fmt: skip


def task_row(values: Sequence[Any]) -> dict[str, Any]:
    """A ``q_task`` row read by ``GET_SQL``, by column name, as SQLAlchemy returns it."""
    row = dict(zip(TASK_COLUMNS, values, strict=True))
    row["started"] = _utc(row["started"])
    row["stopped"] = _utc(row["stopped"])
    row["success"] = None if row["success"] is None else bool(row["success"])
    return row


_CREATE_TABLES = """
import sys
from sqlalchemy.exc import SQLAlchemyError
from qengine.db import get_engine, store_error
try:
    get_engine(sys.argv[1])
except SQLAlchemyError as exc:
    sys.exit(str(store_error(sys.argv[1], "create its tables", exc)))
"""


# -- files --------------------------------------------------------------------------


class LiteFile:
    """One SQLite file of the engine's: its idle connections, its tables, its checkpointer.

    Connections are set up as ``qengine.db`` sets up its SQLite engines
    (write-ahead log, ``synchronous=NORMAL``, a 30 s busy timeout, the
    driver in autocommit so that transactions are begun explicitly); a
    connection is used by one thread at a time and returned for the next.
    """

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._has_tables = False

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        if is_checkpointed(self.path):
            conn.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_CHECKPOINT_PAGES}")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this file's for the caller's thread alone, returned afterwards."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # a failure mid-transaction must not reach the next user
                conn.rollback()
            with self._lock:
                self._idle.append(conn)

    def close_idle(self) -> None:
        """Close the connections nobody holds (before a fork; when checkpointing starts)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def ensure_tables(self) -> None:
        """Create the engine's tables where the file lacks any, once per process."""
        if self._has_tables:
            return
        with self.connection() as conn:
            found = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if not set(TABLES) <= found:
            self._create_tables()
        self._has_tables = True

    def _create_tables(self) -> None:
        db = sys.modules.get("qengine.db")
        if db is not None:  # SQLAlchemy is loaded already
            db.get_engine(self.url)
            return
        # Not worth 13 MB for the rest of this process's life: a child runs the DDL and
        # prints our one-line error if it fails.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run(
            [sys.executable, "-c", _CREATE_TABLES, self.url], env=env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no output"]
            if lines[-1].startswith("result store "):
                raise StoreError(lines[-1])
            raise store_failure(self.url, "create its tables", lines[-1], unreachable=False)

    def _failure(self, action: str, exc: sqlite3.Error) -> StoreError:
        return store_failure(
            self.url, action, str(exc), unreachable=isinstance(exc, sqlite3.OperationalError)
        )

    def write(self, sql: str, params: Sequence[Sequence[Any]], action: str) -> int:
        """Run ``sql`` once per parameter set in one ``BEGIN IMMEDIATE`` transaction;
        return how many rows changed. IMMEDIATE takes the write lock up front, so a
        busy file makes this wait (busy timeout) instead of failing at the upgrade."""
        try:
            self.ensure_tables()
            with self.connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                changed = conn.executemany(sql, params).rowcount
                conn.execute("COMMIT")
                return changed
        except sqlite3.Error as exc:
            raise self._failure(action, exc) from exc

    def read(self, sql: str, params: Sequence[Any], action: str) -> list[tuple[Any, ...]]:
        try:
            self.ensure_tables()
            with self.connection() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(action, exc) from exc

    # -- the statements ---------------------------------------------------------------

    def save_tasks(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Upsert ``q_task`` rows (``UPSERT_SQL``) in one transaction."""
        self.write(UPSERT_SQL, [task_params(row) for row in rows], "save results")

    def prune_tasks(self, keep: int) -> int:
        """Delete the successes beyond the newest ``keep``; return how many went."""
        return self.write(PRUNE_SQL, [(keep,)], "prune old results")

    def get_task(self, key: str) -> dict[str, Any] | None:
        """The row with this id, or else the newest with this name."""
        found = self.read(GET_SQL, (key,), "read tasks")
        return task_row(found[0]) if found else None

    def next_due(self, cluster_name: str) -> datetime | None:
        """When this cluster's soonest schedule is due; None if it has none."""
        found = self.read(NEXT_DUE_SQL, (cluster_name,), "read schedules")
        return _utc(found[0][0]) if found else None

    def start_checkpointer(self) -> Checkpointer:
        """A running ``Checkpointer`` for this file (see there); stop it with ``stop()``."""
        self.ensure_tables()
        _checkpointed.add(os.path.abspath(self.path))
        # Connections opened before (SQLAlchemy's too) would still checkpoint on their commits.
        close_engine_connections()
        checkpointer = Checkpointer(self)
        checkpointer.thread.start()
        return checkpointer


class Checkpointer:
    """Copies a SQLite store's write-ahead log into its database from a thread of its own.

    Why: by default the commit that grows the log past 1,000 pages does
    the checkpoint itself, copying and syncing several megabytes before it
    returns. In a cluster that commit is the monitor's, on the path between
    a finished task and its waiter: one round trip in a hundred and fifty
    took 3-5 ms instead of 1. A passive checkpoint here never blocks
    writers or readers; the process's other connections checkpoint by
    themselves only far beyond that (``FALLBACK_CHECKPOINT_PAGES``), so
    the log stays bounded if this thread ever falls behind.
    """

    def __init__(self, file: LiteFile) -> None:
        self.file = file
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="qengine-checkpoint", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(CHECKPOINT_EVERY_S):
            self.checkpoint()

    def checkpoint(self) -> None:
        """One passive checkpoint; a failure is logged and the next round tries again.

        Why the truncation: a log restarts only when a writer begins after a
        checkpoint that copied every frame while no reader held a snapshot.
        Under a steady load (a commit every millisecond, waiters reading)
        that moment rarely comes, so the log grew to ~90 MB beside a 27 MB
        database and stayed that size on disk (82 MB beside 8 MB after
        20,000 tasks; 11 MB with this). A long log is emptied by a
        ``TRUNCATE`` checkpoint that waits at most ``TRUNCATE_WAIT_MS`` for
        the write lock and for readers in its way, never busy_timeout's
        30 s; when it gives up it was a passive checkpoint, and the next
        round tries again. Once it has the lock it holds it while it copies
        what the passive one left, syncs and cuts the log (10-20 ms on a
        virtual disk), so a commit of the monitor can wait that long, once
        per long log; measured over a load and round trips, saves over
        10 ms came no more often with it than without (bench/NOTES.md).
        """
        try:
            with self.file.connection() as conn:
                _, log_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if log_pages >= TRUNCATE_FROM_PAGES:
                    conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
                    try:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    finally:
                        conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            log.debug("checkpoint of %s failed: %s", mask_url(self.file.url), exc)

    def stop(self) -> None:
        """Stop the thread after a last checkpoint; writers checkpoint as usual again."""
        self._stop.set()
        self.thread.join()
        self.checkpoint()
        _checkpointed.discard(os.path.abspath(self.file.path))
        self.file.close_idle()


_files: dict[str, LiteFile] = {}
_files_lock = threading.Lock()


def lite_file(url: str) -> LiteFile | None:
    """The process's ``LiteFile`` for ``url`` if it names one of the engine's own SQLite
    files (``own_file``) and no framework supplies its connections; else None."""
    path = own_file(url)
    if path is None:
        return None
    db = sys.modules.get("qengine.db")  # frameworks register their schemes there
    if db is not None and url.partition("://")[0] in db._factories:
        return None
    with _files_lock:
        file = _files.get(url)
        if file is None:
            file = _files[url] = LiteFile(url, path)
        return file


def close_engine_connections(*, forget: bool = False) -> None:
    """Close the engine's idle database connections — its SQLite files' here, SQLAlchemy's
    engines' where ``qengine.db`` is loaded — before a fork (a child must not share a
    handle), or with ``forget`` drop the files and engines too (a new configuration).
    A process that never loaded SQLAlchemy has no engines, and is not made to load it."""
    with _files_lock:
        files = list(_files.values())
        if forget:
            _files.clear()
    for file in files:
        file.close_idle()
    db = sys.modules.get("qengine.db")
    if db is not None:
        if forget:
            db.dispose_engines()
        else:
            db.close_idle_connections()
