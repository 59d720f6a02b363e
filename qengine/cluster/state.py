"""What a cluster holds: every leased task from delivery until it is acknowledged or let go.

Also the cluster's counters, which its threads share.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..brokers.base import Delivery
from ..task import TaskMessage

if TYPE_CHECKING:
    from .pool import WorkerPool

__all__ = ["HELD_WORK_S", "SETTLING_CAP", "Counters", "GiveUp", "Held", "Holdings", "task_timeout"]


def task_timeout(message: TaskMessage, default_s: float | None) -> float | None:
    """The timeout a task runs under: its own, else the cluster's (``default_s``); None: none.

    Decided once, when the pusher takes the task, and carried with it: to the
    worker (the soft timeout) and to the guard (the hard one).
    """
    return default_s if message.timeout is None else message.timeout


@dataclass(slots=True, kw_only=True)
class Held:
    """One task between delivery and acknowledgement."""

    seq: int
    delivery: Delivery
    message: TaskMessage
    timeout_s: float | None = None
    """Its effective timeout (``task_timeout``); the worker and the guard both use this one."""
    deaths: int = 0
    """Times a worker died while running this task (kill -9, crash, hard timeout)."""
    timed_out: bool = False
    given_up: bool = False
    """The cluster failed it for good (worker deaths, attempts): acknowledge whatever happens."""
    pool: WorkerPool | None = None
    future: Future[Any] | None = None
    since: float = field(default_factory=time.monotonic)


class GiveUp(Protocol):
    """Fail a held task without (another) run and let the monitor settle it (the cluster's).

    With ``acknowledge=False`` the usual rules (``ack_failures``, ``max_attempts``)
    decide whether the failure is acknowledged or delivered again.
    """

    def __call__(
        self, held: Held, reason: str, *, timed_out: bool = False, acknowledge: bool = True
    ) -> None: ...


@dataclass(slots=True)
class Counters:
    """The cluster's running totals, as ``Stat`` shows them; each has one writer thread.

    Shared by reference, so a thread the guard restarts counts on where the
    dead one stopped.
    """

    processed: int = 0
    """Tasks finished (stored or cached), failures included; written by the monitor."""
    failed: int = 0
    """Of those, the failed ones; written by the monitor."""
    rejected: int = 0
    """Packages the pusher dropped unrun (see ``Stat.rejected``)."""
    redeliveries: int = 0
    """Tasks received with a delivery count over 1 (see ``Stat.redeliveries``); the pusher's."""
    reincarnations: int = 0
    """Pools and workers replaced, threads restarted; written in the guard's thread."""


SETTLING_CAP = 1024
"""Most finished tasks that may wait for their save and acknowledgement before the pusher
stops taking more: the bound on memory when the store or the broker falls behind."""


HELD_WORK_S = 0.05
"""Seconds of work a cluster holds per worker (up to ``queue_limit``): enough that a worker
never waits for the next round trip to the broker, little enough that slow tasks are left in
the queue for other clusters."""


class Holdings:
    """The cluster's held tasks by sequence number, with room accounting for the pusher.

    ``queue_limit`` (``limit``) counts the tasks waiting for a worker or running.
    A task whose outcome the monitor has collected no longer holds a slot while
    its result is saved and acknowledged: with a small limit (Django Q's
    workers ** 2) a slot held until the save left the store a handful of results per commit
    and the workers idle during each one. Those settling tasks are bounded on
    their own (``SETTLING_CAP``), so a store or broker that falls behind still
    stops the pusher.
    """

    def __init__(self, limit: int, workers: int | None = None) -> None:
        self.limit = limit
        self.workers = workers
        self.run_s: float | None = None
        """Average seconds a task ran (per hand-off, smoothed); None before the first."""
        self._items: dict[int, Held] = {}
        self._settling: set[int] = set()
        self._seq = itertools.count(1)
        self._changed = threading.Condition()

    def next_seq(self) -> int:
        return next(self._seq)

    def add(self, items: Iterable[Held]) -> None:
        with self._changed:
            for item in items:
                self._items[item.seq] = item

    def get(self, seq: int) -> Held | None:
        return self._items.get(seq)

    def settling(self, seqs: Iterable[int]) -> None:
        """These tasks finished running: their slots are free while their results are saved."""
        with self._changed:
            self._settling.update(seq for seq in seqs if seq in self._items)
            self._changed.notify_all()

    def release(self, seqs: Iterable[int]) -> None:
        """Forget tasks that are finished (acknowledged, or left to the broker to redeliver)."""
        with self._changed:
            for seq in seqs:
                self._items.pop(seq, None)
                self._settling.discard(seq)
            self._changed.notify_all()

    def note_run(self, tasks: int, seconds: float) -> None:
        """A hand-off of ``tasks`` tasks kept its worker busy ``seconds`` (the monitor's)."""
        if tasks > 0:
            each = max(seconds, 0.0) / tasks
            self.run_s = each if self.run_s is None else 0.8 * self.run_s + 0.2 * each

    def target(self) -> int:
        """How many tasks to hold waiting or running now: ``queue_limit`` at most.

        With ``workers`` given, as many as keep each worker busy for
        ``HELD_WORK_S`` at the tasks' recent speed, and at least two per worker
        (one running, one ready); before the first task ran, that least.
        """
        if self.workers is None:
            return self.limit
        least = 2 * self.workers
        if self.run_s is None:
            return min(self.limit, least)
        per_worker = HELD_WORK_S / max(self.run_s, 1e-6)
        return max(min(self.limit, least), min(self.limit, int(self.workers * per_worker)))

    def room(self) -> int:
        if len(self._settling) >= max(self.limit, SETTLING_CAP):
            return 0
        return self.target() - (len(self._items) - len(self._settling))

    def wait_for_room(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.room() > 0, timeout)

    def wait_empty(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._items, timeout)

    def items(self) -> list[Held]:
        with self._changed:
            return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
