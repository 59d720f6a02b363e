"""The cluster: one process with pusher, monitor and scheduler threads, a guard and a worker pool.

Start order: broker and store, worker pool (every worker started), monitor,
pusher, scheduler; then the guard loops until a stop. ``stop()`` documents
the stop procedure.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import psutil

from .. import lifecycle, lite
from ..brokers.base import Broker
from ..chains import continue_chain
from ..config import Config
from ..errors import BrokerError
from ..notify import notify_groups_safely, notify_safely
from ..outcomes import failed_outcome, finish
from ..runtime import get_config, get_notifier, get_reporters, get_signer, get_store, new_broker
from ..signing import Signer
from ..status import Stat
from ..store import ResultStore

if TYPE_CHECKING:
    from ..lite import Checkpointer
from ..task import Outcome
from .forking import can_fork_helpers, fork_helpers
from .guard import Guard
from .monitor import Monitor
from .pool import WORKER_MODULES, TaskModules, WorkerPool
from .pusher import Pusher
from .reporting import ReportingThread
from .scheduler import Scheduler
from .state import Counters, Held, Holdings
from .workers import Results, Workers

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
        self._phase = "Starting"
        self.counters = Counters()
        self.tob = time.time()
        assert self.config.queue_limit is not None  # Config fills in its default
        self.holdings = Holdings(self.config.queue_limit, workers=self.config.workers)
        self.results: Results = queue.SimpleQueue()
        self.reporting = ReportingThread(self.config)
        # Made by the start, which opens connections and resolves the secret; the stop
        # closes what was made.
        self.signer: Signer | None = None
        self.broker: Broker | None = None
        self.store: ResultStore | None = None
        self.upkeep: Checkpointer | None = None
        self.workers: Workers | None = None
        self.guard: Guard | None = None
        self.pusher: Pusher | None = None
        self.monitor: Monitor | None = None
        self.scheduler: Scheduler | None = None
        self._stat = Stat(cluster_id=self.cluster_id, name=self.config.name, pid=self.pid)
        self._thread: threading.Thread | None = None

    # -- the spec's reference ----------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self.config.timeout

    @property
    def status(self) -> str:
        """Starting, Idle or Working (by whether tasks are held), Stopping, Stopped."""
        if self._phase != "Running":
            return self._phase
        return "Working" if len(self.holdings) else "Idle"

    @property
    def processed(self) -> int:
        return self.counters.processed

    @property
    def failed(self) -> int:
        return self.counters.failed

    @property
    def rejected(self) -> int:
        """Packages the pusher dropped unrun (see ``Stat.rejected``)."""
        return self.counters.rejected

    @property
    def redeliveries(self) -> int:
        """Tasks received with a delivery count over 1 (see ``Stat.redeliveries``)."""
        return self.counters.redeliveries

    @property
    def reincarnations(self) -> int:
        return self.counters.reincarnations

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
        stat.workers = self.workers.pids if self.workers else []
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
        if can_fork_helpers():  # run() on the main thread, nothing else running yet
            self._fork_helpers()
        # The runtime resolves the secret once per configuration; every worker of every
        # pool gets this signer and never reads a secret itself.
        self.signer = signer = get_signer(config)
        self.broker = broker = new_broker(config)
        self.store = store = get_store(config)
        self.upkeep = store.start_upkeep()
        # A bad error_reporter stops the start, not the monitor at the first failed task.
        if get_reporters(config):
            self.reporting.start()
        make_pool = partial(
            WorkerPool, workers=config.workers, recycle=config.recycle, signer=signer,
            affinity=config.cpu_affinity, worker_init=self.worker_init,
            task_modules=TaskModules(),  # one for every pool: a new pool's workers import them too
        )  # fmt: skip
        self.workers = workers = Workers(make_pool, self.results, self.label)
        workers.renew()
        self.guard = Guard(
            config=config, broker=broker, holdings=self.holdings, workers=workers,
            counters=self.counters, give_up=self.give_up, check_threads=self.check_threads,
            publish=self.publish, label=self.label,
        )  # fmt: skip
        notifier = get_notifier(config)
        self._finish: Callable[[list[Outcome]], None] = partial(
            finish, config=config, broker=broker, store=store,
            notify=partial(notify_safely, notifier),
            notify_groups=partial(notify_groups_safely, notifier),
            report=self.reporting.submit, continue_chain=continue_chain,
        )  # fmt: skip
        self.monitor = self._new_monitor()
        self.monitor.thread.start()
        self.pusher = self._new_pusher()
        self.pusher.thread.start()
        if config.scheduler:
            self.scheduler = Scheduler(
                config=config, broker=broker, store=store, signer=signer,
                stop_event=self.stop_event, label=self.label,
            )  # fmt: skip
            self.scheduler.thread.start()
        if threading.current_thread() is threading.main_thread():
            # A process of its own (qcluster): what it has made so far lives as long as it.
            # Frozen, a full collection no longer walks it (~10 ms each, a round trip's
            # stall); an embedding application's objects are left to its own collector.
            gc.freeze()
        log.info("%s guarding cluster at %d", self.label, self.pid)
        self._phase = "Running"
        self.start_event.set()
        self.publish()
        log.info("%s running.", self.label)

    def _fork_helpers(self) -> None:
        """Start the workers' fork server as a copy of this process, before it opens anything.

        A process of its own (qcluster) has imported the engine, the
        framework and their libraries by now: workers forked from that copy
        share those pages instead of importing them again each.
        """
        lifecycle.close_thread_connections()  # a fork must not copy a database session
        lite.close_engine_connections()
        fork_helpers(preload=WORKER_MODULES)

    def _new_monitor(self) -> Monitor:
        assert self.broker is not None
        assert self.workers is not None
        return Monitor(
            config=self.config, broker=self.broker, holdings=self.holdings,
            results=self.results, finish=self._finish, counters=self.counters,
            note_worker=self.workers.note_worker, report_broken=self.workers.report_broken,
            label=self.label,
        )  # fmt: skip

    def _new_pusher(self) -> Pusher:
        assert self.broker is not None
        assert self.signer is not None
        assert self.store is not None
        assert self.workers is not None
        return Pusher(
            config=self.config, broker=self.broker, signer=self.signer, store=self.store,
            holdings=self.holdings, counters=self.counters, dispatch=self.workers.dispatch,
            give_up=self.give_up, stop_event=self.stop_event, label=self.label,
            run_once=self.run_once,
        )  # fmt: skip

    def _guard_loop(self) -> None:
        cycle = self.config.guard_cycle
        while not self.stop_event.wait(cycle):
            self._guard_tick()

    def _guard_tick(self) -> None:
        assert self.guard is not None
        try:
            self.guard.tick(time.monotonic())
        except Exception:
            # The guard is what keeps the cluster alive: log and go on with the next round.
            log.exception("%s guard error; continuing", self.label)
            lifecycle.between_batches()  # a polling thread: tended after errors (see lifecycle)

    def _stop(self) -> None:
        self.stop_event.set()
        self._phase = "Stopping"
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
        if self.workers is not None:
            self.workers.shutdown()
        self._phase = "Stopped"
        self.publish()
        try:
            self._stat.clear(self.config)
        except Exception as exc:  # the status expires on its own anyway
            log.debug("could not clear status: %s", exc)
        if self.broker is not None:
            self.broker.close()
        if self.upkeep is not None:
            self.upkeep.stop()
        log.info("%s has stopped.", self.label)
        self.stopped_event.set()

    # -- handed to the threads -----------------------------------------------------------

    def give_up(
        self, held: Held, reason: str, *, timed_out: bool = False, acknowledge: bool = True
    ) -> None:
        """Fail a task without (another) run and let the monitor save and settle it."""
        held.given_up = acknowledge
        log.error("%s: task %s [%s]: %s", self.label, held.message.name, held.message.id, reason)
        self.results.put(
            (None, [(held, failed_outcome(held.message, reason, timed_out=timed_out))])
        )

    def check_threads(self) -> None:
        """Restart the pusher or the monitor if it died (the guard asks every round)."""
        pusher, monitor = self.pusher, self.monitor
        if pusher is not None and not pusher.thread.is_alive() and not self.stop_event.is_set():
            log.critical("%s: the pusher thread died; restarting it", self.label)
            self.counters.reincarnations += 1
            self.pusher = self._new_pusher()
            self.pusher.thread.start()
        if monitor is not None and not monitor.thread.is_alive() and not monitor.done.is_set():
            log.critical("%s: the monitor thread died; restarting it", self.label)
            self.counters.reincarnations += 1
            self.monitor = self._new_monitor()
            self.monitor.thread.start()

    def publish(self) -> None:
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
