"""The SQL broker: packages as rows of ``q_queue`` in any SQLAlchemy database, leased by lock."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..config import Config, mask_url
from ..db import QueueRow, get_engine, normalize_url
from ..errors import BrokerError, BrokerUnavailable
from .base import Broker, Delivery

__all__ = ["SQLBroker"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE_S = 0.005
"""Pause before looking again at a queue that just had work (see ``SqlBroker.receive``)."""

CHUNK_BYTES = 4 * 1024 * 1024
"""Largest payload sum sent in one INSERT, under MySQL's default max_allowed_packet."""

CHUNK_IDS = 500
"""Most ids in one ``IN (…)`` list, under every database's parameter limit."""

ATTEMPTS = 3
"""Tries of a transaction the database aborted to break a deadlock or serialization conflict."""

# Deadlock and serialization failures (PostgreSQL SQLSTATE, MySQL/MariaDB error codes):
# the database rolled the transaction back and asks for it to be run again.
_PG_CONFLICTS = {"40001", "40P01"}
_MYSQL_CONFLICTS = {1205, 1213}


# db.get_engine creates the tables on first use; two threads doing that at once on a new
# SQLite file make one fail with "database is locked" (both read, then both want to write).
_first_use = threading.Lock()


def _is_conflict(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_CONFLICTS:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _MYSQL_CONFLICTS


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, on one line: SQLAlchemy's adds the statement and its
    parameters (packages)."""
    return " ".join((str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)).split())


def _inserted_id(result: CursorResult[Any]) -> str:
    key = result.inserted_primary_key
    assert key is not None, "an INSERT of one row has a primary key"
    return str(key[0])


def _now() -> datetime:
    return datetime.now(UTC)


def _due(now: datetime) -> Any:
    """Rows free to lease at ``now``: never leased, or their lease ran out."""
    return or_(QueueRow.lock.is_(None), QueueRow.lock < now)


class SQLBroker(Broker):
    """A queue as rows of ``q_queue`` whose ``key`` is the queue name.

    A row's ``lock`` is the end of its current lease: NULL means never
    delivered, a past time means the lease ran out and the row can be
    delivered again. Receiving picks rows with ``FOR UPDATE SKIP LOCKED``
    (PostgreSQL, MySQL/MariaDB) or inside ``BEGIN IMMEDIATE`` (SQLite), so
    consumers in several clusters never lease the same row at once.
    Lease times come from this host's clock; keep the clocks of all clusters in sync.
    """

    keeps_queue_in_sql = True

    def __init__(
        self,
        config: Config,
        list_key: str | None = None,
        *,
        connection: Engine | None = None,
    ) -> None:
        """Check the URL now; connect (and create the tables) on first use.

        Args:
            connection: an SQLAlchemy engine to use instead of the configured URL; its
                ``q_queue`` table must exist already.
        """
        super().__init__(config, list_key)
        if connection is not None:
            self.connection = connection
            self.url = connection.url.render_as_string(hide_password=True)
            self._sqlite = connection.dialect.name == "sqlite"
        else:
            # A malformed URL fails here, not in a thread.
            self._sqlite = normalize_url(config.broker_url).startswith("sqlite")
            self.url = mask_url(config.broker_url)
        self._retry = timedelta(seconds=config.retry)
        self._empty_at = float("-inf")
        self._pause_s = self.config.poll
        """When a receive last found nothing: the next query waits a poll interval from there."""

    # -- plumbing -------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine, built (and the tables created) on first use."""
        if self.connection is None:
            with _first_use:
                self.connection = get_engine(self.config.broker_url)
                # The URL may not tell (a framework's own scheme); the dialect does.
                self._sqlite = self.connection.dialect.name == "sqlite"
        engine: Engine = self.connection
        return engine

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate database errors into ours, naming the queue and the masked URL."""
        try:
            yield
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            raise BrokerUnavailable(
                f"database at {self.url} cannot be reached to {action} queue "
                f"{self.list_key!r}: {_reason(exc)} (check that the database server is running "
                "there)"
            ) from exc
        except SQLAlchemyError as exc:
            raise BrokerError(
                f"database at {self.url} failed to {action} queue {self.list_key!r}: {_reason(exc)}"
            ) from exc

    def _transaction(
        self,
        action: str,
        work: Callable[[Connection], T],
        *,
        lease: bool = False,
        single: bool = False,
    ) -> T:
        """Run ``work`` in one transaction, again if the database aborted it for a conflict.

        ``lease`` asks for the write lock up front on SQLite (two deferred transactions
        that both read, then write, would fail instead of waiting) and for READ
        COMMITTED on MySQL/MariaDB (no gap locks, so enqueues do not wait on receives).
        ``single`` says ``work`` runs one statement: a server database then runs it in
        autocommit, which spares the BEGIN and COMMIT round trips (SQLite is left alone:
        its engine issues its own BEGIN, which autocommit would leave open).
        """
        with self._errors(action):
            engine = self.engine
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    with engine.connect() as conn:
                        if lease and engine.dialect.name == "sqlite":
                            conn.execution_options(sqlite_begin="IMMEDIATE")
                        elif lease and engine.dialect.name in {"mysql", "mariadb"}:
                            conn.execution_options(isolation_level="READ COMMITTED")
                        elif single and engine.dialect.name != "sqlite":
                            conn.execution_options(isolation_level="AUTOCOMMIT")
                        with conn.begin():
                            return work(conn)
                except DBAPIError as exc:
                    if attempt == ATTEMPTS or not _is_conflict(exc):
                        raise
                    log.debug("queue %r: %s conflicted, trying again", self.list_key, action)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _ids(self, ack_ids: Iterable[str]) -> list[int]:
        try:
            return [int(ack_id) for ack_id in ack_ids]
        except ValueError as exc:
            raise BrokerError(
                f"queue {self.list_key!r}: not a receipt of this broker ({exc})"
            ) from exc

    def _mine(self) -> Any:
        return QueueRow.key == self.list_key

    # -- producing ------------------------------------------------------------------

    def enqueue(self, package: bytes) -> str:
        return self._transaction(
            "enqueue to", lambda conn: self._insert(conn, package), single=True
        )

    @classmethod
    def embedded_secret_url(cls, config: Config) -> str | None:
        url = config.broker_url
        return url if url.startswith("sqlite") else None

    def enqueues_with(self, store_url: str) -> bool:
        return normalize_url(self.config.broker_url) == normalize_url(store_url)

    def enqueue_in(self, conn: Connection, package: bytes) -> str:
        """Enqueue inside the caller's open transaction on the broker's database.

        The package becomes visible when, and only if, that transaction commits: the
        scheduler claims a slot and queues its task atomically this way (and on SQLite,
        where its claim holds the write lock, a second connection could not write at all).
        """
        with self._errors("enqueue to"):
            return self._insert(conn, package)

    def _insert(self, conn: Connection, package: bytes) -> str:
        result = conn.execute(
            insert(QueueRow).values(key=self.list_key, payload=package, lock=None, deliveries=0)
        )
        return _inserted_id(result)

    def enqueue_many(self, packages: Iterable[bytes]) -> list[str]:
        """Insert all in one transaction, as multi-row INSERTs of a few megabytes each."""
        rows: list[dict[str, Any]] = [
            {"key": self.list_key, "payload": package, "lock": None, "deliveries": 0}
            for package in packages
        ]
        if not rows:
            return []
        chunks: list[list[dict[str, Any]]] = [[]]
        size = 0
        for row in rows:
            if chunks[-1] and size + len(row["payload"]) > CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(row)
            size += len(row["payload"])

        def work(conn: Connection) -> list[str]:
            ids: list[str] = []
            if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
                statement = insert(QueueRow).returning(QueueRow.id, sort_by_parameter_order=True)
                for chunk in chunks:
                    ids.extend(str(row_id) for row_id in conn.execute(statement, chunk).scalars())
            else:
                # No RETURNING (MySQL): one INSERT per row is the only way to learn each id.
                for row in rows:
                    result = conn.execute(insert(QueueRow).values(**row))
                    ids.append(_inserted_id(result))
            return ids

        return self._transaction("enqueue to", work)

    # -- consuming ------------------------------------------------------------------

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Lease up to ``count`` packages, polling until ``timeout``.

        ``timeout`` defaults to one poll interval. Once the queue was found empty,
        this instance queries again only after a pause, however its callers loop;
        only a non-blocking call (``timeout=0``) always queries at once. The pause
        is ``poll`` on an idle queue; after a package was found it starts at
        ``FIRST_PAUSE_S`` and doubles at each empty look up to ``poll``: work
        tends to come in runs, and a task queued just after the last one should
        not wait ``poll`` seconds (a round trip with the embedded default went
        from 220 ms to a few), while an idle cluster still looks only every
        ``poll`` seconds.
        """
        count = count or self.config.receive_count
        poll = self.config.poll
        wait_s = poll if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + wait_s
        while True:
            if wait_s > 0:
                pause = self._empty_at + self._pause_s - time.monotonic()
                if pause > 0:
                    left = deadline - time.monotonic()
                    time.sleep(max(0.0, min(pause, left)))
                    if pause >= left:
                        return []
            deliveries = self._lease(count)
            if deliveries:
                self._empty_at = float("-inf")
                self._pause_s = min(FIRST_PAUSE_S, poll)
                return deliveries
            if self._empty_at != float("-inf"):  # a second empty look in a row
                self._pause_s = min(self._pause_s * 2, poll)
            self._empty_at = time.monotonic()
            if self._empty_at >= deadline:
                return []

    def _lease(self, count: int) -> list[Delivery]:
        if self._sqlite and not self._anything_due():
            return []

        def work(conn: Connection) -> list[Delivery]:
            now = _now()
            query = (
                select(QueueRow.id, QueueRow.payload, QueueRow.deliveries)
                .where(self._mine(), _due(now))
                .order_by(QueueRow.id)
                .limit(count)
            )
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(
                update(QueueRow)
                .where(QueueRow.id.in_([row.id for row in rows]))
                .values(lock=now + self._retry, deliveries=QueueRow.deliveries + 1)
            )
            return [Delivery(str(row.id), bytes(row.payload), row.deliveries + 1) for row in rows]

        return self._transaction("receive from", work, lease=True)

    def _anything_due(self) -> bool:
        """Whether a lease would find a package, from a read that takes no lock.

        SQLite has one writer at a time: a cluster polling an empty queue with
        write transactions made every ``async_task`` wait for the lock, and
        SQLite's busy handler sleeps whole milliseconds. In WAL mode this read
        waits for no one and no one waits for it.
        """

        def work(conn: Connection) -> bool:
            query = select(QueueRow.id).where(self._mine(), _due(_now())).limit(1)
            return conn.execute(query).first() is not None

        return self._transaction("receive from", work)

    def acknowledge(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def acknowledge_many(self, ack_ids: Iterable[str]) -> None:
        """Delete the rows: one ``DELETE … IN`` per few hundred receipts."""
        ids = self._ids(ack_ids)
        if not ids:
            return

        def work(conn: Connection) -> None:
            for start in range(0, len(ids), CHUNK_IDS):
                chunk = ids[start : start + CHUNK_IDS]
                conn.execute(delete(QueueRow).where(self._mine(), QueueRow.id.in_(chunk)))

        self._transaction("acknowledge on", work, single=len(ids) <= CHUNK_IDS)

    def extend(self, ack_ids: Iterable[str]) -> None:
        """Push the end of these leases to ``retry`` seconds from now (heartbeat)."""
        ids = self._ids(ack_ids)
        if not ids:
            return

        def work(conn: Connection) -> None:
            lock = _now() + self._retry
            for start in range(0, len(ids), CHUNK_IDS):
                chunk = ids[start : start + CHUNK_IDS]
                conn.execute(
                    update(QueueRow)
                    # Never-delivered rows have no lease to extend.
                    .where(self._mine(), QueueRow.id.in_(chunk), QueueRow.lock.is_not(None))
                    .values(lock=lock)
                )

        self._transaction("extend leases on", work, single=len(ids) <= CHUNK_IDS)

    def fail(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def delete(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    # -- the queue as a whole -------------------------------------------------------

    def _count(self, *conditions: Any) -> int:
        def work(conn: Connection) -> int:
            query = select(func.count()).select_from(QueueRow).where(self._mine(), *conditions)
            return int(conn.execute(query).scalar_one())

        return self._transaction("measure", work, single=True)

    def queue_size(self) -> int:
        return self._count(_due(_now()))

    def lock_size(self) -> int:
        return self._count(QueueRow.lock >= _now())

    def purge_queue(self) -> None:
        self._transaction(
            "purge", lambda conn: conn.execute(delete(QueueRow).where(self._mine())), single=True
        )

    def delete_queue(self) -> None:
        """A SQL queue is nothing but its rows: same as ``purge_queue``."""
        self._transaction(
            "delete", lambda conn: conn.execute(delete(QueueRow).where(self._mine())), single=True
        )

    def ping(self) -> bool:
        try:
            self._transaction("reach", lambda conn: conn.execute(select(1)), single=True)
        except Exception:  # ping promises a bool whatever went wrong
            return False
        return True

    def info(self) -> str:
        def work(conn: Connection) -> str:
            version = conn.dialect.server_version_info
            if conn.dialect.name == "sqlite":
                text = sqlite3.sqlite_version
            else:
                text = ".".join(str(part) for part in version or ()) or "unknown"
            return f"SQL {conn.dialect.name} {text}"

        return self._transaction("describe", work, single=True)

    def __repr__(self) -> str:
        return f"<SQLBroker queue={self.list_key!r} url={self.url!r}>"
