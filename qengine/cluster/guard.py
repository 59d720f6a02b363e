"""The guard (the spec's sentinel): pool health, timeouts, memory, leases, and the heartbeat."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from ..errors import BrokerError
from .state import Counters, GiveUp, Held, Holdings

if TYPE_CHECKING:
    from ..brokers.base import Broker
    from ..config import Config
    from .workers import Workers

__all__ = ["DEATH_LIMIT", "Guard", "hard_grace_s"]

log = logging.getLogger(__name__)

DEATH_LIMIT = 3
"""Worker deaths one task may cause before it is failed for good when max_attempts is 0."""

PUBLISH_EVERY_S = 1.0


def hard_grace_s(timeout: float) -> float:
    """Extra time a task gets after its soft timeout before its worker is killed."""
    return min(5.0, max(1.0, timeout / 2))


class Guard:
    """The guard: run once a ``guard_cycle`` by the cluster's own thread (``tick``).

    It owns no thread and no state of its own but its timers; each round it
    replaces a broken pool (running again what was lost with it), kills a
    worker whose task overran its hard timeout, retires a pool over
    ``max_rss``, announces recycled workers, renews the leases of held
    tasks, has dead threads restarted, and publishes the status.
    """

    def __init__(
        self,
        *,
        config: Config,
        broker: Broker,
        holdings: Holdings,
        workers: Workers,
        counters: Counters,
        give_up: GiveUp,
        check_threads: Callable[[], None],
        publish: Callable[[], None],
        label: str,
    ) -> None:
        self.config = config
        self.broker = broker
        self.holdings = holdings
        self.workers = workers
        self.counters = counters
        self.give_up = give_up
        self.check_threads = check_threads
        self.publish = publish
        self.label = label
        self.last_extend = time.monotonic()
        self.last_publish = 0.0

    @property
    def extend_every_s(self) -> float:
        """Leases are renewed four times per ``retry``, so one missed renewal costs nothing."""
        return max(self.config.guard_cycle, min(self.config.retry / 4, 15.0))

    def tick(self, now: float) -> None:
        """One round: every check once. Each check logs its own failures."""
        self.replace_broken_pool()
        self.enforce_timeouts()
        self.enforce_max_rss()
        self.note_workers()
        if now - self.last_extend >= self.extend_every_s:
            self.extend_leases()
            self.last_extend = now
        self.check_threads()
        if now - self.last_publish >= PUBLISH_EVERY_S:
            self.publish()
            self.last_publish = now

    # -- the pool ---------------------------------------------------------------------

    def replace_broken_pool(self) -> None:
        workers = self.workers
        pool = workers.pool
        broken = bool(getattr(pool.executor, "_broken", False))
        reported = workers.take_broken()
        # Only a report of a hand-off to the current pool that came back without outcomes
        # says this pool is broken. The monitor may report a hand-off to a pool this guard
        # replaced already (it was busy, e.g. retrying the store, when the pool broke): that
        # task runs in the current pool now, and replacing the pool would run it once more
        # and blame it for a death that did not happen.
        reported_here = any(
            held is not None and held.pool is pool and _lost(held)
            for held in map(self.holdings.get, reported)
        )
        if not (broken or reported_here):
            return
        pool.broken = True
        # The executor's own thread terminates the other workers; wait for that so the
        # exit codes tell a crash (SIGKILL, segfault) from the executor's SIGTERM.
        for process in list(pool.processes.values()):
            process.join(timeout=2)
        crashed = pool.crashed_pids()
        running = {view.seq: view.pid for view in pool.running()}
        self.counters.reincarnations += 1
        log.warning(
            "%s: worker pool broke (crashed pids %s); starting a new one",
            self.label, sorted(crashed) or "unknown",
        )  # fmt: skip
        workers.renew()
        pool.shutdown(wait=False)
        again: list[Held] = []
        for held in self.holdings.items():
            if held.pool is not pool or _handed_back(held):
                # A hand-off that returned before the pool broke: its outcomes are on their
                # way to the monitor, and running it again would only run it twice.
                continue
            if held.timed_out:
                reason = (
                    f"TaskTimeout: the task timed out after {held.timeout_s} seconds "
                    "and its worker was killed"
                )
                self.give_up(held, reason, timed_out=True, acknowledge=False)
                continue
            pid = running.get(held.seq)
            if pid is not None and (pid in crashed or not crashed):
                held.deaths += 1
                if self._out_of_lives(held):
                    self.give_up(
                        held,
                        f"the worker process (pid {pid}) died while running this task, "
                        f"{held.deaths} time(s); giving up",
                    )
                    continue
                held.message.attempt_count += 1  # the run that follows is another attempt
            again.append(held)
        if again:
            log.info("%s: running %d interrupted task(s) again", self.label, len(again))
            workers.dispatch(again)

    def _out_of_lives(self, held: Held) -> bool:
        limit = self.config.max_attempts
        if limit:
            return held.message.attempt_count >= limit
        return held.deaths >= DEATH_LIMIT

    def enforce_timeouts(self) -> None:
        pool = self.workers.pool
        now = time.time()
        for view in pool.running():
            held = self.holdings.get(view.seq)
            if held is None or held.timed_out:
                continue
            timeout = held.timeout_s
            if timeout is None:
                continue
            if now - view.started > timeout + hard_grace_s(timeout):
                held.timed_out = True
                log.warning(
                    "%s: task %s [%s] ignored its %ss timeout; killing worker %d",
                    self.label, held.message.name, held.message.id, timeout, view.pid,
                )  # fmt: skip
                pool.kill(view.pid)

    def enforce_max_rss(self) -> None:
        limit = self.config.max_rss
        if not limit:
            return
        workers = self.workers
        retired = workers.pool
        over = [pid for pid in retired.pids if workers.rss_kb.get(pid, 0) > limit]
        if not over:
            return
        log.info(
            "%s: worker(s) %s passed max_rss (%d KB); retiring the pool",
            self.label, over, limit,
        )  # fmt: skip
        for pid in over:
            workers.rss_kb.pop(pid, None)
        self.counters.reincarnations += 1
        workers.renew()
        retired.retired = True
        # The old pool finishes what it was handed, then its workers exit.
        threading.Thread(target=retired.shutdown, kwargs={"wait": True}, daemon=True).start()

    def note_workers(self) -> None:
        for pid in self.workers.recycled():
            self.counters.reincarnations += 1  # a worker recycled after `recycle` hand-offs
            log.info("%s: worker ready for work at %d", self.label, pid)

    # -- leases ---------------------------------------------------------------------

    def extend_leases(self) -> None:
        ack_ids = [held.delivery.ack_id for held in self.holdings.items()]
        if not ack_ids:
            return
        try:
            self.broker.extend(ack_ids)
        except BrokerError as exc:
            log.warning("%s: cannot renew leases (%s)", self.label, exc)


def _handed_back(held: Held) -> bool:
    """Whether the task's last hand-off returned (outcomes, or the error of the whole batch)."""
    future = held.future
    return (
        future is not None
        and future.done()
        and not future.cancelled()
        and not isinstance(future.exception(), BrokenProcessPool)
    )


def _lost(held: Held) -> bool:
    """Whether the task's last hand-off ended without outcomes, or was never made."""
    future = held.future
    return future is None or (future.done() and not _handed_back(held))
