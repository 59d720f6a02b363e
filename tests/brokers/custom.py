"""An in-process broker with leases, loaded through ``broker_class`` by the contract suite.

It is what a user's own broker looks like: a ``Broker`` subclass that
``get_broker`` imports by its dotted path. Queues live in this module, shared
by every instance of the process, the way a server is shared by clients.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from qengine.brokers import Broker, Delivery


@dataclass
class _Queue:
    """One queue: packages in arrival order, each with the end of its lease (0: not leased)."""

    packages: dict[int, bytes] = field(default_factory=dict)
    leases: dict[int, float] = field(default_factory=dict)
    deliveries: dict[int, int] = field(default_factory=dict)


_queues: dict[str, _Queue] = {}
_ids = itertools.count(1)
_changed = threading.Condition()


class MemoryBroker(Broker):
    """Thread-safe queues in this process's memory, with receipts and ``retry`` leases."""

    def _queue(self) -> _Queue:
        # Callers hold _changed.
        return _queues.setdefault(self.list_key, _Queue())

    def enqueue(self, package: bytes) -> str:
        with _changed:
            package_id = next(_ids)
            self._queue().packages[package_id] = package
            _changed.notify_all()
        return str(package_id)

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        count = count or self.config.receive_count
        deadline = time.monotonic() + (self.config.poll if timeout is None else timeout)
        with _changed:
            while True:
                now = time.monotonic()
                queue = self._queue()
                # dict order is insertion order: the oldest free packages come first.
                free = [i for i in queue.packages if queue.leases.get(i, 0) <= now][:count]
                if free or now >= deadline:
                    break
                # Wake for new packages, or when the nearest lease may have run out.
                _changed.wait(min(deadline - now, 0.05))
            for package_id in free:
                queue.leases[package_id] = now + self.config.retry
                queue.deliveries[package_id] = queue.deliveries.get(package_id, 0) + 1
            return [Delivery(str(i), queue.packages[i], queue.deliveries[i]) for i in free]

    def acknowledge(self, ack_id: str) -> None:
        self.delete(ack_id)

    def extend(self, ack_ids: Iterable[str]) -> None:
        with _changed:
            queue = self._queue()
            until = time.monotonic() + self.config.retry
            for ack_id in ack_ids:
                if int(ack_id) in queue.leases:
                    queue.leases[int(ack_id)] = until

    def delete(self, ack_id: str) -> None:
        with _changed:
            queue = self._queue()
            package_id = int(ack_id)
            queue.packages.pop(package_id, None)
            queue.leases.pop(package_id, None)
            queue.deliveries.pop(package_id, None)

    def queue_size(self) -> int:
        with _changed:
            queue, now = self._queue(), time.monotonic()
            return sum(1 for i in queue.packages if queue.leases.get(i, 0) <= now)

    def lock_size(self) -> int:
        with _changed:
            queue, now = self._queue(), time.monotonic()
            return sum(1 for i in queue.packages if queue.leases.get(i, 0) > now)

    def purge_queue(self) -> None:
        with _changed:
            _queues[self.list_key] = _Queue()

    def delete_queue(self) -> None:
        with _changed:
            _queues.pop(self.list_key, None)

    def ping(self) -> bool:
        return True

    def info(self) -> str:
        return "Memory broker"


class NotABroker:
    """Named by a test as ``broker_class``: loading must refuse it."""
