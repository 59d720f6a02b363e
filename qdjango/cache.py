"""Cached results in Django's cache framework (``Q_CLUSTER['cache']`` names a ``CACHES`` alias)."""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache, InvalidCacheBackendError
from django.core.cache.backends.locmem import LocMemCache
from django.utils.connection import ConnectionDoesNotExist

from qengine.cache import ResultCache

__all__ = ["DjangoCache", "django_cache"]

_FOREVER = None  # Django: a timeout of None keeps the value


class DjangoCache(ResultCache):
    """The engine's cache interface on a Django cache.

    Django caches have no sets; a set is a counter (``incr`` is atomic on
    Redis, Memcached and the database backends) plus one key per slot, so
    the monitors of several clusters can add members at the same time.
    """

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    @property
    def is_local(self) -> bool:
        """True for a per-process cache, which other processes cannot see."""
        return isinstance(self.cache, LocMemCache)

    def set(self, key: str, value: bytes, timeout: int | None = None) -> None:
        self.cache.set(key, value, timeout if timeout is not None else _FOREVER)

    def get(self, key: str) -> bytes | None:
        value = self.cache.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        found = self.cache.get_many(keys)
        return [None if found.get(key) is None else bytes(found[key]) for key in keys]

    def delete(self, *keys: str) -> None:
        doomed = list(keys)
        for key in keys:
            count = self.cache.get(f"{key}:n")
            if count:
                doomed += [f"{key}:n", *(f"{key}:{slot}" for slot in range(1, int(count) + 1))]
        self.cache.delete_many(doomed)

    def add_member(self, key: str, member: str, timeout: int | None = None) -> int:
        counter = f"{key}:n"
        expiry = timeout if timeout is not None else _FOREVER
        self.cache.add(counter, 0, expiry)
        slot = self.cache.incr(counter)
        self.cache.set(f"{key}:{slot}", member, expiry)
        if timeout is not None:
            self.cache.touch(counter, timeout)
        return len(self.members(key))

    def members(self, key: str) -> list[str]:
        count = int(self.cache.get(f"{key}:n") or 0)
        slots = [f"{key}:{slot}" for slot in range(1, count + 1)]
        return sorted({str(v) for v in self.cache.get_many(slots).values() if v is not None})


def django_cache(name: str) -> DjangoCache | None:
    """The engine's cache factory for Django cache aliases."""
    try:
        return DjangoCache(caches[name])
    except (ConnectionDoesNotExist, InvalidCacheBackendError, KeyError):  # not an alias
        return None
