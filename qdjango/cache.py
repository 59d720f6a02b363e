"""Cached results in Django's cache framework (``Q_CLUSTER['cache']`` names a ``CACHES`` alias)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache, InvalidCacheBackendError
from django.core.cache.backends.locmem import LocMemCache
from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist
from redis import RedisError

from qengine.cache import ResultCache
from qengine.config import mask_url
from qengine.errors import StoreError

__all__ = ["DjangoCache", "django_cache"]

_FOREVER = None  # Django: a timeout of None keeps the value


def _backend_errors() -> tuple[type[BaseException], ...]:
    """What the cache backends raise when their server is down or refuses.

    Redis (Django's own backend and django-redis 6+), the database backend, and
    sockets (Memcached clients). django-redis before 6 wraps Redis errors in its own.
    """
    errors: tuple[type[BaseException], ...] = (RedisError, DatabaseError, OSError)
    try:
        from django_redis.exceptions import ConnectionInterrupted
    except ImportError:
        return errors
    return (*errors, ConnectionInterrupted)


class DjangoCache(ResultCache):
    """The engine's cache interface on a Django cache.

    Django caches have no sets; a set is a counter (``incr`` is atomic on
    Redis, Memcached and the database backends) plus one key per slot, so
    the monitors of several clusters can add members at the same time.
    """

    def __init__(self, cache: BaseCache, alias: str | None = None) -> None:
        """``alias``: the ``CACHES`` name of ``cache``, for error messages."""
        self.cache = cache
        self.alias = alias
        self._errors_caught = _backend_errors()

    def _where(self) -> str:
        """The cache for messages: alias, backend and servers, passwords masked."""
        backend = f"{type(self.cache).__module__}.{type(self.cache).__qualname__}"
        location = settings.CACHES.get(self.alias, {}).get("LOCATION") if self.alias else None
        if isinstance(location, list | tuple):
            location = ", ".join(mask_url(str(part)) for part in location)
        elif location:
            location = mask_url(str(location))
        at = f" at {location}" if location else ""
        return f"Django cache {self.alias or '?'!r} ({backend}{at})"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """The backend's failures as ``StoreError``, as for the engine's own caches."""
        try:
            yield
        except self._errors_caught as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            setting = f"CACHES[{self.alias!r}]" if self.alias else "CACHES"
            raise StoreError(
                f"{self._where()} failed to {action}: {reason}; "
                f"check that its server is running and that {setting} names it"
            ) from exc

    @property
    def is_local(self) -> bool:
        """True for a per-process cache, which other processes cannot see."""
        return isinstance(self.cache, LocMemCache)

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        with self._errors("write cached results"):
            self.cache.set(key, value, timeout if timeout is not None else _FOREVER)

    def get(self, key: str) -> bytes | None:
        with self._errors("read cached results"):
            value = self.cache.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        with self._errors("read cached results"):
            found = self.cache.get_many(keys)
        return [None if found.get(key) is None else bytes(found[key]) for key in keys]

    def delete(self, *keys: str) -> None:
        with self._errors("delete cached results"):
            doomed = list(keys)
            for key in keys:
                count = self.cache.get(f"{key}:n")
                if count:
                    doomed += [f"{key}:n", *(f"{key}:{slot}" for slot in range(1, int(count) + 1))]
            self.cache.delete_many(doomed)

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        counter = f"{key}:n"
        expiry = timeout if timeout is not None else _FOREVER
        with self._errors("write cached results"):
            self.cache.add(counter, 0, expiry)
            slot = self.cache.incr(counter)
            self.cache.set(f"{key}:{slot}", member, expiry)
            if timeout is not None:
                self.cache.touch(counter, timeout)
        return len(self.members(key))

    def members(self, key: str) -> list[str]:
        with self._errors("read cached results"):
            count = int(self.cache.get(f"{key}:n") or 0)
            slots = [f"{key}:{slot}" for slot in range(1, count + 1)]
            found = self.cache.get_many(slots)
        return sorted({str(v) for v in found.values() if v is not None})


def django_cache(name: str) -> DjangoCache | None:
    """The engine's cache factory for Django cache aliases."""
    try:
        return DjangoCache(caches[name], name)
    except (ConnectionDoesNotExist, InvalidCacheBackendError, KeyError):  # not an alias
        return None


def is_cache_alias(name: str) -> bool:
    """Whether ``name`` is one of the project's caches (``CACHES``): checked when qdjango's
    configuration is made, so a misspelt ``cache`` fails at start, not at the first result."""
    return name in settings.CACHES
