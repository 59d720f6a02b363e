"""Where ``cached=`` results live: Redis, a table of the store, or this process's memory."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import delete, insert, or_, select

from .config import Config, on_reset
from .db import CacheRow, get_engine, writing
from .errors import ConfigError

__all__ = ["MemoryCache", "RedisCache", "ResultCache", "StoreCache", "get_cache"]


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
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        self.client.set(key, value, ex=timeout)

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)  # type: ignore[return-value]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return self.client.mget(keys) if keys else []  # type: ignore[return-value]

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*keys)

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        pipe = self.client.pipeline()
        pipe.sadd(key, member)
        if timeout is not None:
            pipe.expire(key, timeout)
        pipe.scard(key)
        return int(pipe.execute()[-1])

    def members(self, key: str) -> list[str]:
        return sorted(m.decode() for m in self.client.smembers(key))  # type: ignore[union-attr]


class StoreCache(ResultCache):
    """Rows of ``q_cache`` in the result store; a set is one row per member."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)

    @staticmethod
    def _expires(timeout: int | None) -> datetime | None:
        return None if timeout is None else datetime.now(UTC) + timedelta(seconds=timeout)

    @staticmethod
    def _alive() -> Any:
        return or_(CacheRow.expires.is_(None), CacheRow.expires > datetime.now(UTC))

    def _put(self, rows: dict[str, tuple[bytes, datetime | None]]) -> None:
        with writing(self.engine) as conn:
            conn.execute(delete(CacheRow).where(CacheRow.key.in_(list(rows))))
            conn.execute(
                insert(CacheRow),
                [{"key": k, "value": v, "expires": e} for k, (v, e) in rows.items()],
            )

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        self._put({key: (value, self._expires(timeout))})

    def get(self, key: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(CacheRow.value).where(CacheRow.key == key, self._alive()))

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CacheRow.key, CacheRow.value).where(CacheRow.key.in_(keys), self._alive())
            )
            found = dict(rows.all())
        return [found.get(key) for key in keys]

    def delete(self, *keys: str) -> None:
        if not keys:
            return
        with writing(self.engine) as conn:
            conn.execute(delete(CacheRow).where(CacheRow.key.in_(keys)))
            for key in keys:
                conn.execute(delete(CacheRow).where(CacheRow.key.startswith(key + "\x1f")))

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        self._put({f"{key}\x1f{member}": (b"", self._expires(timeout))})
        return len(self.members(key))

    def members(self, key: str) -> list[str]:
        prefix = key + "\x1f"
        with self.engine.connect() as conn:
            keys = conn.scalars(
                select(CacheRow.key).where(CacheRow.key.startswith(prefix), self._alive())
            )
            return sorted(k[len(prefix) :] for k in keys)


_caches: dict[tuple[str, str], ResultCache] = {}
_lock = threading.Lock()


def _redis_client(config: Config, url: str | None) -> redis.Redis:
    from .brokers.redis import redis_client  # one place builds Redis clients

    return redis_client(config, url)


CacheFactory = Callable[[str], "ResultCache | None"]
_factories: list[CacheFactory] = []


def register_cache_factory(factory: CacheFactory) -> None:
    """Let an integration serve ``cache`` names of its own (qdjango: Django cache aliases).

    ``factory(name)`` returns a cache for a name it knows, else None.
    """
    if factory not in _factories:
        _factories.append(factory)


def get_cache(config: Config) -> ResultCache:
    """The cache ``config.cache`` names; by default the broker's Redis, else the store."""
    choice = config.cache
    if choice is None:
        choice = "redis" if config.broker_kind == "redis" else "store"
    key = (choice, config.broker_url if choice == "redis" else config.store)
    with _lock:
        cache = _caches.get(key)
        if cache is not None:
            return cache
        if choice == "memory":
            cache = MemoryCache()
        elif choice == "store":
            cache = StoreCache(config.store)
        elif choice == "redis" or choice.startswith(("redis://", "rediss://", "unix://")):
            cache = RedisCache(_redis_client(config, None if choice == "redis" else choice))
        else:
            cache = next(filter(None, (factory(choice) for factory in _factories)), None)
        if cache is None:
            raise ConfigError(
                f"config key 'cache' has the invalid value {config.cache!r}: "
                "a redis:// URL, 'store' or 'memory' (Django cache aliases need qdjango)"
            )
        _caches[key] = cache
        return cache


@on_reset
def drop_caches() -> None:
    with _lock:
        _caches.clear()
