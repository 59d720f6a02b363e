"""Where ``cached=`` results live: Redis, a table of the store, or this process's memory."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from .brokers import broker_class
from .config import Config
from .errors import ConfigError, StoreError
from .redis_conn import (
    REDIS_SCHEMES,
    client_setting,
    close_client,
    describe_client,
    redis_client,
    redis_errors,
    uses_provided_client,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = [
    "MemoryCache",
    "RedisCache",
    "ResultCache",
    "StoreCache",
    "make_cache",
    "register_cache_factory",
]


class ResultCache(ABC):
    """A small key-value store with expiry and sets, enough for cached results and groups.

    ``timeout`` is in seconds; None keeps a value until it is deleted.
    """

    @abstractmethod
    def set(self, key: str, value: bytes, timeout: int | None = None) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    @abstractmethod
    def delete(self, *keys: str) -> None: ...

    @abstractmethod
    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        """Add ``member`` to the set at ``key``; return the set's size afterwards."""

    @abstractmethod
    def members(self, key: str) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - a hook most caches need not fill
        """Release connections of its own (a replaced configuration); most hold none."""


class MemoryCache(ResultCache):
    """In this process only: for sync mode and tests."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    @staticmethod
    def _expiry(timeout: int | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        with self._lock:
            self._data[key] = (value, self._expiry(timeout))

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
            return value if isinstance(value, bytes) else None

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        with self._lock:
            current = self._live(key)
            members = set(current) if isinstance(current, set) else set()
            members.add(member)
            self._data[key] = (members, self._expiry(timeout))
            return len(members)

    def members(self, key: str) -> list[str]:
        with self._lock:
            current = self._live(key)
            return sorted(current) if isinstance(current, set) else []


class RedisCache(ResultCache):
    """Cached results in Redis: the broker's (the default) or one the ``cache`` URL names.

    Failures raise ``StoreError``, whichever Redis it is: cached results are
    results, so a caller (and the monitor, which keeps a batch and retries)
    treats a cache that is down like a store that is down.
    """

    def __init__(
        self, client: redis.Redis, setting: str | None = None, *, owned: bool = False
    ) -> None:
        """``setting``: the configuration key that names this Redis, for error messages;
        ``owned``: ``close`` disconnects the client (never one lent by ``django_redis``)."""
        self.client = client
        self.where = describe_client(client)
        self.setting = setting
        self._owned = owned

    def close(self) -> None:
        close_client(self.client, owned=self._owned)

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return redis_errors(
            self.where, action, self.setting, unavailable=StoreError, failed=StoreError
        )

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        with self._errors("write cached results"):
            self.client.set(key, value, ex=timeout)

    def get(self, key: str) -> bytes | None:
        with self._errors("read cached results"):
            return self.client.get(key)  # type: ignore[return-value]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._errors("read cached results"):
            return self.client.mget(keys)  # type: ignore[return-value]

    def delete(self, *keys: str) -> None:
        if keys:
            with self._errors("delete cached results"):
                self.client.delete(*keys)

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        with self._errors("write cached results"):
            pipe = self.client.pipeline()
            pipe.sadd(key, member)
            if timeout is not None:
                pipe.expire(key, timeout)
            pipe.scard(key)
            return int(pipe.execute()[-1])

    def members(self, key: str) -> list[str]:
        with self._errors("read cached results"):
            members = self.client.smembers(key)
        return sorted(m.decode() for m in members)  # type: ignore[union-attr]


class StoreCache(ResultCache):
    """Rows of ``q_cache`` in the result store; a set is one row per member.

    Failures raise ``StoreError`` naming the store, as the store's own reads do.
    SQLAlchemy and ``qengine.db`` are imported in the methods, not by this module,
    so that a cluster on a SQLite store and Redis never loads SQLAlchemy.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def engine(self) -> Engine:
        """Opened (and its tables created) on first use: building a cache reaches no server."""
        from .db import get_engine

        return get_engine(self.url)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        from sqlalchemy.exc import SQLAlchemyError

        from .db import store_error

        try:
            yield
        except SQLAlchemyError as exc:
            raise store_error(self.url, action, exc) from exc

    @staticmethod
    def _expires(timeout: int | None) -> datetime | None:
        return None if timeout is None else datetime.now(UTC) + timedelta(seconds=timeout)

    @staticmethod
    def _alive() -> Any:
        from sqlalchemy import or_

        from .db import CacheRow

        return or_(CacheRow.expires.is_(None), CacheRow.expires > datetime.now(UTC))

    def _put(self, rows: dict[str, tuple[bytes, datetime | None]]) -> None:
        from sqlalchemy import delete, insert

        from .db import CacheRow, writing

        with self._errors("write cached results"), writing(self.engine) as conn:
            conn.execute(delete(CacheRow).where(CacheRow.key.in_(list(rows))))
            conn.execute(
                insert(CacheRow),
                [{"key": k, "value": v, "expires": e} for k, (v, e) in rows.items()],
            )

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        self._put({key: (value, self._expires(timeout))})

    def get(self, key: str) -> bytes | None:
        from sqlalchemy import select

        from .db import CacheRow

        with self._errors("read cached results"), self.engine.connect() as conn:
            return conn.scalar(select(CacheRow.value).where(CacheRow.key == key, self._alive()))

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        from sqlalchemy import select

        from .db import CacheRow

        with self._errors("read cached results"), self.engine.connect() as conn:
            rows = conn.execute(
                select(CacheRow.key, CacheRow.value).where(CacheRow.key.in_(keys), self._alive())
            )
            found = dict(rows.all())
        return [found.get(key) for key in keys]

    def delete(self, *keys: str) -> None:
        if not keys:
            return
        from sqlalchemy import delete

        from .db import CacheRow, writing

        with self._errors("delete cached results"), writing(self.engine) as conn:
            conn.execute(delete(CacheRow).where(CacheRow.key.in_(keys)))
            for key in keys:
                conn.execute(delete(CacheRow).where(CacheRow.key.startswith(key + "\x1f")))

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        self._put({f"{key}\x1f{member}": (b"", self._expires(timeout))})
        return len(self.members(key))

    def members(self, key: str) -> list[str]:
        from sqlalchemy import select

        from .db import CacheRow

        prefix = key + "\x1f"
        with self._errors("read cached results"), self.engine.connect() as conn:
            keys = conn.scalars(
                select(CacheRow.key).where(CacheRow.key.startswith(prefix), self._alive())
            )
            return sorted(k[len(prefix) :] for k in keys)


def _redis_cache(config: Config, url: str | None) -> RedisCache:
    """The broker's Redis (``url`` None) or the one at ``url``, named after its setting."""
    setting = "cache" if url else client_setting(config)
    return RedisCache(
        redis_client(config, url), setting, owned=not uses_provided_client(config, url)
    )


CacheFactory = Callable[[str], "ResultCache | None"]
_factories: list[CacheFactory] = []


def register_cache_factory(factory: CacheFactory) -> None:
    """Let an integration serve ``cache`` names of its own (qdjango: Django cache aliases).

    ``factory(name)`` returns a cache for a name it knows, else None.
    """
    if factory not in _factories:
        _factories.append(factory)


def make_cache(config: Config) -> ResultCache:
    """The cache ``config.cache`` names; by default the one the broker prefers.

    ``qengine.runtime.get_cache`` keeps one per configuration.
    """
    choice = config.cache or broker_class(config).default_cache
    if choice == "memory":
        return MemoryCache()
    if choice == "store":
        return StoreCache(config.store)
    if choice == "redis" or choice.startswith(REDIS_SCHEMES):
        return _redis_cache(config, None if choice == "redis" else choice)
    cache = next(filter(None, (factory(choice) for factory in _factories)), None)
    if cache is None:
        raise ConfigError(
            f"config key 'cache' has the invalid value {config.cache!r}: "
            "a redis:// URL, 'store' or 'memory' (Django cache aliases need qdjango)"
        )
    return cache
