"""The MongoDB broker: packages as documents of one collection, claimed atomically by lock time."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    DocumentTooLarge,
    PyMongoError,
)

from ..config import Config
from ..errors import BrokerError, BrokerUnavailable, ConfigError, PackageTooLarge
from .base import Broker, Delivery

__all__ = ["COLLECTION", "DEFAULT_DATABASE", "MongoBroker", "mongo_client"]

log = logging.getLogger(__name__)

COLLECTION = "q_queue"
"""The collection holding every queue's packages, like the SQL broker's ``q_queue`` table."""

DEFAULT_DATABASE = "django-q"
"""The database when neither ``mongo_db`` nor the URI names one (the spec's default)."""

INDEX = "qengine_claim"
"""Name of the index that serves claims and counts: queue key, lock time, arrival order."""

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's limit on one document (BSON), which holds one package."""

_DOCUMENT_OVERHEAD = 512
"""Room left in a document for the fields beside the package (key, lock, counts)."""

SELECTION_TIMEOUT_MS = 5000
"""How long an operation waits for a reachable server unless the configuration says otherwise.

pymongo's own default is 30 s, long enough to stall ``ping`` and every broker call.
"""


def mongo_client(config: Config) -> MongoClient[dict[str, Any]]:
    """A client from the ``mongo`` key (MongoClient keyword arguments, or a URI) or a
    ``mongodb://`` broker URL.

    Connects lazily, on the first operation. As in the spec, a dict's ``host`` may
    itself be a ``mongodb://`` URI.
    """
    source = config.mongo if config.mongo is not None else config.broker_url
    setting = "mongo" if config.mongo is not None else "broker"
    options: dict[str, Any] = {}
    if isinstance(source, str):
        options["host"] = source
    elif source:
        options.update(source)
    named = {key.lower() for key in options} | {
        part.split("=", 1)[0].lower()
        for part in str(options.get("host", "")).partition("?")[2].split("&")
    }
    if "serverselectiontimeoutms" not in named:
        options["serverSelectionTimeoutMS"] = SELECTION_TIMEOUT_MS
    options.setdefault("connect", False)
    try:
        return MongoClient(**options)
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise ConfigError(f"config key {setting!r} cannot make a MongoDB client: {exc}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


class MongoBroker(Broker):
    """A queue as the documents of ``q_queue`` whose ``key`` is the queue name.

    A document's ``lock`` is the end of its current lease: null means never
    delivered, a past time means the lease ran out and it can be delivered
    again. A consumer claims one document at a time with ``find_one_and_update``,
    which MongoDB runs atomically, setting the lock, counting the delivery and
    naming itself the ``owner``; only the owner extends a lease. Acknowledging
    deletes the document. Lease times come from this host's clock; keep the
    clocks of all clusters in sync.
    """

    product = "MongoDB"

    package_limit_bytes = MAX_DOCUMENT_BYTES - _DOCUMENT_OVERHEAD

    def __init__(
        self,
        config: Config,
        list_key: str | None = None,
        *,
        connection: MongoClient[dict[str, Any]] | None = None,
    ) -> None:
        """Build the client (it connects on first use); indexes are made on first use too.

        Args:
            connection: a MongoClient to use instead of one made from ``mongo``; it
                stays the caller's to close.
        """
        super().__init__(config, list_key)
        self._owns_client = connection is None
        client = connection if connection is not None else mongo_client(config)
        self.connection = client
        if config.mongo_db:
            self.database = config.mongo_db
        else:
            try:
                self.database = client.get_default_database(default=DEFAULT_DATABASE).name
            except ConfigurationError as exc:  # pragma: no cover - pymongo guards the name
                raise ConfigError(f"config key 'mongo' names no usable database: {exc}") from exc
        self.collection: Collection[dict[str, Any]] = client[self.database][COLLECTION]
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._retry = timedelta(seconds=config.retry)
        self._has_indexes = False
        self._index_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------

    @property
    def _where(self) -> str:
        """Where the broker connects, for messages: hosts and database, never a password."""
        # No public API lists the configured hosts before a connection is made.
        seeds = getattr(getattr(self.connection, "_topology_settings", None), "seeds", ())
        hosts = ",".join(sorted(f"{host}:{port}" for host, port in seeds)) or "?"
        return f"MongoDB at {hosts}/{self.database}"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate pymongo errors into ours, naming the queue and the server."""
        try:
            yield
        except ConnectionFailure as exc:
            raise BrokerUnavailable(
                f"{self._where} cannot be reached to {action} queue {self.list_key!r}: {exc}"
            ) from exc
        except DocumentTooLarge as exc:
            raise PackageTooLarge(
                f"{self._where}: a package is too large for queue {self.list_key!r}: {exc}"
            ) from exc
        except PyMongoError as exc:
            raise BrokerError(
                f"{self._where} failed to {action} queue {self.list_key!r}: {exc}"
            ) from exc

    def _ensure_indexes(self) -> None:
        """Create the claim index once per instance; createIndexes is a no-op when it exists."""
        if self._has_indexes:
            return
        with self._index_lock:
            if not self._has_indexes:
                self.collection.create_index(
                    [("key", ASCENDING), ("lock", ASCENDING), ("_id", ASCENDING)], name=INDEX
                )
                self._has_indexes = True

    def _ids(self, ack_ids: Iterable[str]) -> list[ObjectId]:
        try:
            return [ObjectId(ack_id) for ack_id in ack_ids]
        except (InvalidId, TypeError) as exc:
            raise BrokerError(
                f"queue {self.list_key!r}: not a receipt of this broker ({exc})"
            ) from exc

    def _check_size(self, package: bytes) -> None:
        if len(package) > self.package_limit_bytes:
            raise PackageTooLarge(
                f"package of {len(package)} bytes is too large for MongoDB queue "
                f"{self.list_key!r}: a document holds at most {self.package_limit_bytes} bytes "
                "of package (16 MiB with its fields); pass large data by reference instead"
            )

    def _document(self, package: bytes) -> dict[str, Any]:
        self._check_size(package)
        return {"key": self.list_key, "payload": package, "lock": None, "deliveries": 0}

    def _free(self, now: datetime) -> dict[str, Any]:
        """The filter of this queue's documents that may be delivered now."""
        return {"key": self.list_key, "$or": [{"lock": None}, {"lock": {"$lt": now}}]}

    # -- producing ------------------------------------------------------------------

    def enqueue(self, package: bytes) -> str:
        document = self._document(package)
        with self._errors("enqueue to"):
            self._ensure_indexes()
            return str(self.collection.insert_one(document).inserted_id)

    def enqueue_many(self, packages: Iterable[bytes]) -> list[str]:
        """Insert all with one ordered ``insert_many`` (pymongo splits large ones).

        Not atomic: if a batch fails, the documents before it stay in the queue.
        """
        documents = [self._document(package) for package in packages]
        if not documents:
            return []
        with self._errors("enqueue to"):
            self._ensure_indexes()
            result = self.collection.insert_many(documents, ordered=True)
        return [str(document_id) for document_id in result.inserted_ids]

    # -- consuming ------------------------------------------------------------------

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Lease up to ``count`` packages, polling every ``poll`` seconds until ``timeout``.

        ``timeout`` defaults to one poll interval.
        """
        count = count or self.config.receive_count
        poll = self.config.poll
        deadline = time.monotonic() + (poll if timeout is None else max(0.0, timeout))
        with self._errors("receive from"):
            self._ensure_indexes()
            while True:
                deliveries = self._claim(count)
                if deliveries:
                    return deliveries
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                time.sleep(min(poll, left))

    def _claim(self, count: int) -> list[Delivery]:
        """Claim the oldest free documents one by one, each in one atomic update."""
        now = _now()
        deliveries: list[Delivery] = []
        for _ in range(count):
            document = self.collection.find_one_and_update(
                self._free(now),
                {
                    "$set": {"lock": now + self._retry, "owner": self.consumer},
                    "$inc": {"deliveries": 1},
                },
                projection={"payload": True, "deliveries": True},
                sort=[("_id", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
            if document is None:
                break
            deliveries.append(
                Delivery(str(document["_id"]), bytes(document["payload"]), document["deliveries"])
            )
        return deliveries

    def acknowledge(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def acknowledge_many(self, ack_ids: Iterable[str]) -> None:
        """Delete the documents in one ``delete_many``."""
        ids = self._ids(ack_ids)
        if not ids:
            return
        with self._errors("acknowledge on"):
            self.collection.delete_many({"_id": {"$in": ids}, "key": self.list_key})

    def extend(self, ack_ids: Iterable[str]) -> None:
        """Push the end of the leases this consumer still owns to ``retry`` seconds from now.

        A lease that ran out and was claimed by another consumer has a new owner; the
        owner filter keeps this heartbeat from stretching that one.
        """
        ids = self._ids(ack_ids)
        if not ids:
            return
        with self._errors("extend leases on"):
            self.collection.update_many(
                {"_id": {"$in": ids}, "key": self.list_key, "owner": self.consumer},
                {"$set": {"lock": _now() + self._retry}},
            )

    def fail(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def delete(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    # -- the queue as a whole -------------------------------------------------------

    def queue_size(self) -> int:
        with self._errors("measure"):
            return self.collection.count_documents(self._free(_now()))

    def lock_size(self) -> int:
        with self._errors("measure"):
            return self.collection.count_documents({"key": self.list_key, "lock": {"$gte": _now()}})

    def purge_queue(self) -> None:
        with self._errors("purge"):
            self.collection.delete_many({"key": self.list_key})

    def delete_queue(self) -> None:
        """A queue is nothing but its documents: same as ``purge_queue`` (the index stays)."""
        with self._errors("delete"):
            self.collection.delete_many({"key": self.list_key})

    def ping(self) -> bool:
        try:
            self.connection.admin.command("ping")
        except Exception:  # ping promises a bool whatever went wrong
            return False
        return True

    def info(self) -> str:
        with self._errors("describe"):
            version = self.connection.server_info().get("version", "unknown")
        return f"MongoDB {version}"

    def close(self) -> None:
        """Close our own client; one passed in stays open."""
        if self._owns_client:
            self.connection.close()

    def __repr__(self) -> str:
        return f"<MongoBroker queue={self.list_key!r} database={self.database!r}>"
