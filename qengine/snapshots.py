"""Where clusters publish their status snapshots: short-lived JSON in Redis or in the store.

The broker chooses (``Broker.status_backend``): a Redis broker keeps them in its
Redis, every other broker in the store's ``q_stat`` table. Snapshots are JSON
text here; ``qengine.status.Stat`` reads and writes them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .config import Config
from .redis_conn import (
    client_setting,
    close_client,
    describe_client,
    redis_client,
    redis_errors,
    uses_provided_client,
)

__all__ = ["RedisSnapshots", "SnapshotStore", "StoreSnapshots"]


class SnapshotStore(Protocol):
    """Keeps each cluster's latest snapshot for ``ttl_s`` seconds."""

    def put(self, name: str, cluster_id: str, text: str, ttl_s: int) -> None: ...
    def remove(self, name: str, cluster_id: str) -> None: ...
    def all(self, name: str) -> list[str]: ...
    def close(self) -> None: ...


class RedisSnapshots:
    """Snapshots on the broker's Redis; its failures raise ``BrokerUnavailable``/``BrokerError``."""

    def __init__(self, config: Config) -> None:
        self.client = redis_client(config)
        self.where, self.setting = describe_client(self.client), client_setting(config)
        self._owned = not uses_provided_client(config)

    def close(self) -> None:
        """Disconnect (a replaced configuration); a ``django_redis`` client stays open."""
        close_client(self.client, owned=self._owned)

    def errors(self, action: str) -> AbstractContextManager[None]:
        return redis_errors(self.where, action, self.setting)

    @staticmethod
    def key(name: str, cluster_id: str) -> str:
        return f"qengine:{name}:stat:{cluster_id}"

    def put(self, name: str, cluster_id: str, text: str, ttl_s: int) -> None:
        with self.errors("publish cluster status"):
            self.client.set(self.key(name, cluster_id), text, ex=ttl_s)

    def remove(self, name: str, cluster_id: str) -> None:
        with self.errors("clear cluster status"):
            self.client.delete(self.key(name, cluster_id))

    def all(self, name: str) -> list[str]:
        with self.errors("read cluster status"):
            keys = list(self.client.scan_iter(match=self.key(name, "*"), count=100))
            values = self.client.mget(keys) if keys else []
        return [v.decode() if isinstance(v, bytes) else v for v in values if v]


class StoreSnapshots:
    """Snapshots as rows of the store's ``q_stat``, expired rows swept on each read.

    SQLAlchemy and ``qengine.db`` are imported in the methods, not by this module,
    so that a cluster on a SQLite store and Redis never loads SQLAlchemy.
    """

    def __init__(self, config: Config) -> None:
        self.url = config.store

    def close(self) -> None:
        """Nothing of its own to release: the store's engine is shared."""

    @staticmethod
    def key(name: str, cluster_id: str) -> str:
        return f"{name}:{cluster_id}"

    def put(self, name: str, cluster_id: str, text: str, ttl_s: int) -> None:
        from sqlalchemy import delete, insert
        from sqlalchemy.exc import SQLAlchemyError

        from .db import StatRow, get_engine, store_error, writing

        key = self.key(name, cluster_id)
        expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
        try:
            with writing(get_engine(self.url)) as conn:
                conn.execute(delete(StatRow).where(StatRow.cluster_id == key))
                conn.execute(insert(StatRow), {"cluster_id": key, "data": text, "expires": expires})
        except SQLAlchemyError as exc:
            raise store_error(self.url, "publish cluster status", exc) from exc

    def remove(self, name: str, cluster_id: str) -> None:
        from sqlalchemy import delete
        from sqlalchemy.exc import SQLAlchemyError

        from .db import StatRow, get_engine, store_error, writing

        key = self.key(name, cluster_id)
        try:
            with writing(get_engine(self.url)) as conn:
                conn.execute(delete(StatRow).where(StatRow.cluster_id == key))
        except SQLAlchemyError as exc:
            raise store_error(self.url, "clear cluster status", exc) from exc

    def all(self, name: str) -> list[str]:
        from sqlalchemy import delete, select
        from sqlalchemy.exc import SQLAlchemyError

        from .db import StatRow, get_engine, store_error, writing

        now = datetime.now(UTC)
        try:
            with writing(get_engine(self.url)) as conn:
                conn.execute(delete(StatRow).where(StatRow.expires < now))
                rows = conn.scalars(
                    select(StatRow.data).where(StatRow.cluster_id.startswith(f"{name}:"))
                ).all()
        except SQLAlchemyError as exc:
            raise store_error(self.url, "read cluster status", exc) from exc
        return list(rows)
