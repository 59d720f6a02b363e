"""Result notifications over Redis, so a caller waiting for a result wakes when it is saved.

The waiter marks its interest (a short-lived key) and blocks on a list;
the monitor looks up, once per saved batch, which of its tasks someone
waits for and pushes to just those lists. Nobody waiting costs one MGET
per batch. Without Redis, waiting falls back to polling the store.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from .config import Config, on_reset

__all__ = ["Notifier", "get_notifier"]

LINGER_S = 30
"""How long a notification waits for its reader before Redis drops it."""


class Notifier:
    def __init__(self, config: Config) -> None:
        from .brokers.redis import redis_client

        self.client = redis_client(config)
        self.prefix = f"qengine:{config.name}"

    def _waiting(self, task_id: str) -> str:
        return f"{self.prefix}:waiting:{task_id}"

    def _done(self, task_id: str) -> str:
        return f"{self.prefix}:done:{task_id}"

    def notify(self, task_ids: Sequence[str]) -> None:
        """Wake whoever waits for these tasks (called by the monitor after saving)."""
        if not task_ids:
            return
        flags = self.client.mget([self._waiting(i) for i in task_ids])
        waited = [i for i, flag in zip(task_ids, flags, strict=True) if flag]
        if not waited:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id in waited:
            pipe.rpush(self._done(task_id), 1)
            pipe.expire(self._done(task_id), LINGER_S)
        pipe.execute()

    def wait(self, task_id: str, probe: Callable[[], Any], wait: int) -> Any:
        """``probe()`` until truthy, blocking on the task's notification between tries."""
        deadline = None if wait < 0 else time.monotonic() + wait / 1000
        interest = math.ceil(wait / 1000) + 1 if wait >= 0 else 3600
        self.client.set(self._waiting(task_id), 1, ex=interest)
        try:
            while True:
                value = probe()
                if value:
                    return value
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return value
                # Block at most a second at a time: the result may have been saved just
                # before our interest was visible, and then only the next probe sees it.
                block = 1.0 if left is None else min(left, 1.0)
                self.client.blpop([self._done(task_id)], timeout=max(block, 0.01))
        finally:
            self.client.delete(self._waiting(task_id), self._done(task_id))


_notifiers: dict[int, tuple[Config, Notifier]] = {}
_lock = threading.Lock()


def get_notifier(config: Config) -> Notifier | None:
    """The notifier when the broker is Redis, else None (callers poll)."""
    if config.broker_kind != "redis":
        return None
    with _lock:
        cached = _notifiers.get(id(config))
        if cached is None or cached[0] is not config:
            cached = (config, Notifier(config))
            _notifiers[id(config)] = cached
        return cached[1]


@on_reset
def _drop() -> None:
    with _lock:
        _notifiers.clear()


def notify_safely(config: Config, task_ids: Sequence[str]) -> None:
    """Notify, but never let a notification failure disturb the monitor."""
    notifier = get_notifier(config)
    if notifier is None:
        return
    with contextlib.suppress(redis.RedisError):  # waiters also wake once a second on their own
        notifier.notify(task_ids)
