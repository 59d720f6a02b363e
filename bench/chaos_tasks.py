"""Tasks of the chaos runs: each records its own execution in a ledger the engine never touches.

The ledger is a Redis hash on a server the chaos leaves alone (the shared
Redis, not the broker's), under a key made for one run:

  ``<key>:exec``   field ``n`` → how many times task number ``n`` started
  ``<key>:fired``  field ``<slot>:<task id>`` → runs of that slot by that task
                   (the distinct task ids of a slot are how often it fired)
  ``<key>:total``  executions of the run, for watching progress cheaply

Every task records *before* it does anything else, so a run cut short by a
killed worker still counts: that is how duplicates show up.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from qengine.signals import pre_execute

_clients: dict[str, redis.Redis] = {}
_current_id: str | None = None
"""Id of the task this worker is running, from ``pre_execute`` (a slot task records it)."""


def _remember(_sender: object, *, task: Any, **_kwargs: object) -> None:
    global _current_id
    _current_id = task.id


# Connected when a worker first imports this module, which ``resolve`` does before
# ``pre_execute`` is sent, so even the first task of a worker is seen. Module-level
# functions are strongly referenced by the module: the weak receiver stays alive.
pre_execute.connect(_remember)


def _client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    return client


def _count(url: str, key: str, field: str, hash_name: str = "exec") -> None:
    pipe = _client(url).pipeline(transaction=True)
    pipe.hincrby(f"{key}:{hash_name}", field, 1)
    pipe.incr(f"{key}:total")
    pipe.execute()


def record(url: str, key: str, number: int, sleep_ms: float = 0) -> int:
    """Task number ``number``: count the execution, then work ``sleep_ms`` milliseconds."""
    _count(url, key, str(number))
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    return number


def suicide(url: str, key: str, number: int) -> None:
    """Count the execution, then SIGKILL the process running it: every single time."""
    _count(url, key, str(number))
    os.kill(os.getpid(), signal.SIGKILL)


def slot(url: str, key: str, number: int) -> int:
    """A schedule's task: count this run of slot ``number`` under the id of the task running it."""
    _count(url, key, f"{number}:{_current_id}", hash_name="fired")
    return number


class Ledger:
    """The reading side of one run's ledger, for the checker; ``delete`` removes it."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.client = redis.Redis.from_url(url)

    def progress(self) -> tuple[int, int]:
        """(executions so far, distinct tasks or slot firings executed so far)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(f"{self.key}:total")
        pipe.hlen(f"{self.key}:exec")
        pipe.hlen(f"{self.key}:fired")
        total, distinct, fired = pipe.execute()
        return int(total or 0), int(distinct) + int(fired)

    def executed(self) -> set[int]:
        """Numbers of the tasks that ran at least once."""
        return {int(n) for n in self.client.hkeys(f"{self.key}:exec")}

    def executions(self) -> dict[int, int]:
        """Runs of each task number that ran."""
        return {int(n): int(c) for n, c in self.client.hgetall(f"{self.key}:exec").items()}

    def fired(self) -> dict[int, dict[str, int]]:
        """Per slot: the id of each task that fired it → how often that task ran."""
        slots: dict[int, dict[str, int]] = {}
        for field, count in self.client.hgetall(f"{self.key}:fired").items():
            slot, task_id = field.decode().split(":", 1)
            slots.setdefault(int(slot), {})[task_id] = int(count)
        return slots

    def delete(self) -> None:
        keys = [f"{self.key}:{name}" for name in ("exec", "fired", "total")]
        self.client.delete(*keys)

    def close(self) -> None:
        self.client.close()
