"""The cluster: one process with pusher, monitor and scheduler threads, a guard and a worker pool.

Start order: broker and store, worker pool (every worker started), monitor,
pusher, scheduler; then the guard loops until a stop. ``stop()`` documents
the stop procedure.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

import psutil

from .. import lifecycle
from ..brokers import make_broker
from ..config import Config
from ..errors import BrokerError
from ..notify import notify_groups_safely, notify_safely
from ..outcomes import failed_outcome
from ..runtime import get_config, get_notifier, get_reporters, get_signer, get_store, secret_key
from ..status import Stat
from .guard import Guard
from .monitor import Monitor
from .pool import WorkerPool, batch_sizes
from .pusher import Pusher
from .reporting import ReportingThread
from .scheduler import Scheduler
from .state import Held, Holdings

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

_instances = itertools.count(1)

UNACKED_GRACE_S = 10.0
"""How long a stop waits for a broker to take acknowledgements of saved results."""

REPORTING_GRACE_S = 10.0
"""How long a stop waits for the error reporters to send what is queued."""


class Cluster:
    """A worker cluster for one configuration (the spec's ``Cluster``).

    ``start()`` runs it in background threads of this process and returns;
    ``run()`` runs it in the calling (main) thread until SIGTERM/SIGINT or
    ``stop()``, which is what ``qcluster`` does.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        run_once: bool = False,
        worker_init: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or get_config()
        self.run_once = run_once
        self.worker_init = worker_init
        self.host = socket.gethostname()
        self.pid = os.getpid()
        number = next(_instances)
        self.cluster_id = str(self.pid) if number == 1 else f"{self.pid}.{number}"
        self.label = f"Q Cluster {self.config.name}-{self.cluster_id}"
        self.start_event = threading.Event()
        self.stop_event = threading.Event()
        self.stopped_event = threading.Event()
        self.status = "Starting"
        self.reincarnations = 0
        self.processed = 0
        self.failed = 0
        self.rejected = 0
        """Packages the pusher dropped unrun (see ``Stat.rejected``)."""
        self.redeliveries = 0
        """Tasks received with a delivery count over 1 (see ``Stat.redeliveries``)."""
        self.tob = time.time()
        self.worker_rss: dict[int, int] = {}
        self.expected_pids: set[int] = set()
        self.holdings = Holdings(self.config.queue_limit or self.config.workers**2)
        self.results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self.pusher: Pusher | None = None
        self.monitor: Monitor | None = None
        self.scheduler: Scheduler | None = None
        self.guard = Guard(self)
        self.reporting = ReportingThread(self.config)
        self._stat = Stat(cluster_id=self.cluster_id, name=self.config.name, pid=self.pid)
        self._thread: threading.Thread | None = None
        self._pool: WorkerPool | None = None
        self._lock = threading.RLock()

    # -- the spec's reference ----------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self.config.timeout

    @property
    def is_starting(self) -> bool:
        return not self.start_event.is_set() and not self.stop_event.is_set()

    @property
    def is_running(self) -> bool:
        return self.start_event.is_set() and not self.stop_event.is_set()

    @property
    def is_stopping(self) -> bool:
        return self.stop_event.is_set() and not self.stopped_event.is_set()

    @property
    def has_stopped(self) -> bool:
        return self.stopped_event.is_set()

    def start(self) -> int:
        """Start the cluster in a background thread and return its pid; see ``run``."""
        self._thread = threading.Thread(target=self._serve, name="qengine-guard", daemon=True)
        self._thread.start()
        return self.pid

    def stop(self, timeout: float | None = None) -> bool:
        """Stop and wait for the stop procedure; True when it completed.

        The procedure: the scheduler and the pusher stop taking work; every
        task already held is run to its end; the monitor saves every result
        and acknowledges it; the pool shuts down; the status says Stopped.
        Packages never taken stay in the broker for the next cluster.
        """
        self.stop_event.set()
        return self.stopped_event.wait(timeout)

    def stat(self) -> Stat:
        """The current status of this cluster."""
        stat = self._stat
        stat.status = self.status
        stat.reincarnations = self.reincarnations
        items = self.holdings.items()
        stat.task_q_size = len(items)
        stat.done_q_size = self.results.qsize()
        stat.pusher = _native_id(self.pusher)
        stat.monitor = _native_id(self.monitor)
        stat.sentinel = self.pid
        stat.workers = self._pool.pids if self._pool else []
        stat.queue_limit = self.holdings.limit
        stat.processed = self.processed
        stat.failed = self.failed
        stat.rejected = self.rejected
        stat.redeliveries = self.redeliveries
        stat.rss_kb = self._rss_kb(stat.workers)
        return stat

    # -- running ------------------------------------------------------------------------

    def run(self) -> int:
        """Run in this thread until stopped (SIGTERM, SIGINT or ``stop()``); return 0."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        self._serve()
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if not self.stop_event.is_set():
            log.info("%s got %s", self.label, signal.Signals(signum).name)
        self.stop_event.set()

    def _serve(self) -> None:
        with lifecycle.thread_connections():
            try:
                self._start()
                self._guard_loop()
            finally:
                self._stop()

    def _start(self) -> None:
        config = self.config
        log.info("%s starting.", self.label)
        self.signer = get_signer(config)
        self.secret = secret_key(config)
        self.broker = make_broker(config)
        self.store = get_store(config)
        # A bad error_reporter stops the start, not the monitor at the first failed task.
        if get_reporters(config):
            self.reporting.start()
        self.new_pool()
        self.monitor = Monitor(self)
        self.monitor.thread.start()
        self.pusher = Pusher(self)
        self.pusher.thread.start()
        if config.scheduler:
            self.scheduler = Scheduler(self)
            self.scheduler.thread.start()
        log.info("%s guarding cluster at %d", self.label, self.pid)
        self.status = "Idle"
        self.start_event.set()
        self.publish()
        log.info("%s running.", self.label)

    def _guard_loop(self) -> None:
        cycle = self.config.guard_cycle
        while not self.stop_event.wait(cycle):
            self._guard_tick()

    def _guard_tick(self) -> None:
        try:
            self.guard.tick(time.monotonic())
        except Exception:
            # The guard is what keeps the cluster alive: log and go on with the next round.
            log.exception("%s guard error; continuing", self.label)
            lifecycle.between_batches()  # a polling thread: tended after errors (see lifecycle)

    def _stop(self) -> None:
        self.stop_event.set()
        self.status = "Stopping"
        log.info("%s stopping.", self.label)
        self.publish()
        if self.scheduler is not None:
            self.scheduler.thread.join()
        if self.pusher is not None:
            self.pusher.thread.join()
        # Every held task finishes; the guard keeps watching timeouts and crashes meanwhile.
        unacked_since: float | None = None
        while len(self.holdings) and self.monitor is not None and self.monitor.thread.is_alive():
            self.holdings.wait_empty(self.config.guard_cycle)
            self._guard_tick()
            if len(self.holdings) and len(self.holdings) == self.monitor.unacked_count():
                # Only acknowledgements are missing (broker down). Their results are saved,
                # so a redelivery is acknowledged without running: do not wait forever.
                unacked_since = unacked_since or time.monotonic()
                if time.monotonic() - unacked_since > UNACKED_GRACE_S:
                    log.warning(
                        "%s: leaving %d acknowledgement(s) undone; the broker will redeliver "
                        "those tasks and they will be acknowledged without running again",
                        self.label, len(self.holdings),
                    )  # fmt: skip
                    break
        if self.monitor is not None:
            self.monitor.done.set()
            self.monitor.thread.join()
        self.reporting.stop(REPORTING_GRACE_S)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.status = "Stopped"
        self.publish()
        try:
            self._stat.clear(self.config)
        except Exception as exc:  # the status expires on its own anyway
            log.debug("could not clear status: %s", exc)
        if hasattr(self, "broker"):
            self.broker.close()
        log.info("%s has stopped.", self.label)
        self.stopped_event.set()

    # -- used by the threads -------------------------------------------------------------

    @property
    def pool(self) -> WorkerPool:
        assert self._pool is not None
        return self._pool

    def new_pool(self) -> WorkerPool:
        """Start a fresh pool for new work (first start, crash, or memory retirement)."""
        config = self.config
        pool = WorkerPool(
            workers=config.workers,
            recycle=config.recycle,
            signer=self.signer,
            affinity=config.cpu_affinity,
            worker_init=self.worker_init,
            timeout=config.timeout,
        )
        pool.start()
        self.expected_pids.update(pool.pids)
        for pid in pool.pids:
            log.info("%s: worker ready for work at %d", self.label, pid)
        self._pool = pool
        return pool

    def dispatch(self, items: list[Held]) -> None:
        """Hand held tasks to the current pool, in hand-offs sized to the backlog."""
        pool = self.pool
        start = 0
        for size in batch_sizes(len(items), pool.workers):
            chunk = items[start : start + size]
            start += size
            batch = [(held.seq, held.delivery.package) for held in chunk]
            try:
                future = pool.submit(batch)
            except RuntimeError:
                # The pool broke or was retired between two hand-offs; the guard's
                # replacement runs every task still marked with this pool.
                for held in chunk:
                    held.pool = pool
                self.guard.report_broken([held.seq for held in chunk])
                continue
            for held in chunk:
                held.pool = pool
                held.future = future
            seqs = [held.seq for held in chunk]
            future.add_done_callback(partial(self._handed_back, seqs))
        if self.status == "Idle":
            self.status = "Working"

    def _handed_back(self, seqs: list[int], future: Future[Any]) -> None:
        self.results.put((seqs, future))

    def report_broken(self, seqs: list[int]) -> None:
        self.guard.report_broken(seqs)

    def give_up(
        self, held: Held, reason: str, *, timed_out: bool = False, acknowledge: bool = True
    ) -> None:
        """Fail a task without (another) run and let the monitor save and settle it."""
        held.given_up = acknowledge
        log.error("%s: task %s [%s]: %s", self.label, held.message.name, held.message.id, reason)
        self.results.put(
            (None, [(held, failed_outcome(held.message, reason, timed_out=timed_out))])
        )

    def note_worker(self, pid: int, rss_kb: int) -> None:
        self.worker_rss[pid] = rss_kb

    def count(self, success: bool) -> None:
        self.processed += 1
        if not success:
            self.failed += 1
        if self.status == "Working" and not len(self.holdings):
            self.status = "Idle"

    def notify_done(
        self, task_ids: list[str], rows: dict[str, dict[str, Any]]
    ) -> set[str]:
        """Wake callers waiting for these results (Redis brokers; see ``qengine.notify``)."""
        return notify_safely(get_notifier(self.config), task_ids, rows)

    def notify_groups(self, group_ids: set[str]) -> None:
        """Wake callers waiting on these groups (Redis brokers; see ``qengine.notify``)."""
        notify_groups_safely(get_notifier(self.config), group_ids)

    def restart_thread(self, name: str) -> None:
        self.reincarnations += 1
        if name == "pusher":
            self.pusher = Pusher(self)
            self.pusher.thread.start()
        elif name == "monitor":
            self.monitor = Monitor(self)
            self.monitor.thread.start()

    def publish(self) -> None:
        if len(self.holdings) and self.status == "Idle":
            self.status = "Working"
        elif not len(self.holdings) and self.status == "Working":
            self.status = "Idle"
        try:
            self.stat().save(self.config)
        except (BrokerError, Exception) as exc:  # monitoring must never stop the cluster
            log.debug("%s: cannot publish status: %s", self.label, exc)

    def _rss_kb(self, workers: list[int]) -> int:
        total = 0
        for pid in [self.pid, *workers]:
            try:
                total += psutil.Process(pid).memory_info().rss // 1024
            except psutil.Error:
                continue
        return total


def _native_id(component: Any) -> int:
    thread = getattr(component, "thread", None)
    return int(getattr(thread, "native_id", 0) or 0)
