"""The worker pool: a ProcessPoolExecutor plus a shared table of what each worker is running.

Each worker claims a slot in a shared array and writes ``(pid, seq,
started)`` there while it runs a task, so the guard can find a task that
overran its hard timeout and the process to kill, and after a crash tell
which task was running where.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

from ..lifecycle import between_batches
from ..signing import Signer
from .worker import execute, rss_kb

__all__ = [
    "WORKER_MODULES",
    "HandBack",
    "Handoff",
    "RecyclingExecutor",
    "SlotView",
    "TaskModules",
    "WorkerPool",
    "run_batch",
]

log = logging.getLogger(__name__)

_FIELDS = 3  # pid, seq, started (epoch seconds)

# Set in each worker process by _init_worker.
_slots: Any = None
_slot = -1
_signer: Signer | None = None

WORKER_MODULES = (
    "qengine.cluster.pool",
    "multiprocessing.popen_forkserver",
    "multiprocessing.sharedctypes",
    "multiprocessing.synchronize",
)
"""What every worker imports before its first task: the fork server imports it once, for all."""

Handoff = tuple[int, bytes, float | None]
"""One task handed to a worker: ``(seq, package, timeout_s)``, its timeout decided by the
cluster (``state.task_timeout``)."""


class HandBack(NamedTuple):
    """What a worker returns for one hand-off: its tasks' outcomes, without their messages.

    The cluster holds the messages. Values of each task are in lists, in
    hand-off order: this crosses processes for every hand-off, and one
    record per hand-off pickles as fast as plain tuples, where a record per
    task would cost about a microsecond each on both sides.
    """

    pid: int
    """The worker's process id."""
    rss_kb: int
    """The worker's resident memory after the hand-off (read once per hand-off)."""
    seqs: list[int]
    successes: list[bool]
    result_blobs: list[bytes]
    started: list[datetime]
    stopped: list[datetime]
    timed_out: list[bool]

    def rows(self) -> Iterator[tuple[int, bool, bytes, datetime, datetime, bool]]:
        """``(seq, success, result_blob, started, stopped, timed_out)`` per task."""
        return zip(
            self.seqs, self.successes, self.result_blobs, self.started, self.stopped,
            self.timed_out, strict=True,
        )  # fmt: skip


def _cpus_for(index: int, affinity: int) -> list[int] | None:
    """The spec's affinity table: worker i gets ``affinity`` processors, dealt round-robin."""
    total = os.cpu_count() or 1
    if not 0 < affinity < total:
        return None
    return [(index * affinity + k) % total for k in range(affinity)]


def _claim_slot(slots: Any, lock: Any) -> int:
    with lock:
        for index in range(len(slots) // _FIELDS):
            pid = int(slots[index * _FIELDS])
            if pid and _alive(pid):
                continue
            slots[index * _FIELDS] = os.getpid()
            slots[index * _FIELDS + 1] = 0
            slots[index * _FIELDS + 2] = 0
            return index
    return -1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TaskModules:
    """The modules of the tasks handed to the workers, for each new worker to import first.

    Why: a worker recycled after ``recycle`` tasks is replaced by a fresh
    process, whose first task would import its module on that task's clock
    (5 ms for a small module here, far more for a Django app's); a round
    trip in a few hundred paid it. Imported by the new worker's initializer,
    it is paid while the other workers serve. Crosses into each worker as
    the names noted by the time the worker starts (its arguments are
    pickled then); the names are swapped whole, so no lock is needed.
    """

    LIMIT = 100
    """Most modules remembered: past it, later ones are imported by their first task."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self._seen: set[str] = set()

    def note(self, func: Any) -> None:
        """Remember the module of a task's function, a dotted path or a callable (called
        per task: cheap, and never raises)."""
        if isinstance(func, str):
            module = func.rpartition(".")[0]
        else:
            module = getattr(func, "__module__", None)
            if not isinstance(module, str):
                return
        if module not in self._seen and len(self._seen) < self.LIMIT:
            self._seen.add(module)
            self.names = (*self.names, module)

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (self.names,))


def _import_task_modules(names: Sequence[str]) -> None:
    for name in names:
        if not name or name == "__main__":  # a callable defined in the caller's script
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # the task itself will report it, on its own run
            log.debug("worker could not import %s before its first task: %s", name, exc)


def _leave_with(cluster_pid: int) -> None:
    """End this worker as soon as the cluster that started it is gone, however it went.

    Why: a cluster killed outright (SIGKILL, the OOM killer) never tells
    its workers to stop, and nothing else ends them: they block on the call
    queue, whose write end they hold themselves, and their parent is the
    fork server, which stays as long as any of them holds its pipe. Each
    would keep its memory for ever, and a restarted cluster would start new
    ones beside them. The task a worker is running is abandoned: nobody
    could save its result, and its package, never acknowledged, is
    delivered again once its lease runs out.

    A worker the cluster spawned itself (no fork server) waits on its
    parent's sentinel; one forked by the fork server on a process handle of
    the cluster (Linux 5.3 and later). Elsewhere it is not watched.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == cluster_pid:
        handle: Any = parent.sentinel
    else:
        try:
            handle = os.pidfd_open(cluster_pid)  # readable once the process has ended
        except ProcessLookupError:
            os._exit(1)  # gone before this worker even started
        except (AttributeError, OSError):
            return

    def watch() -> None:
        connection.wait([handle])
        log.warning("worker %d: cluster %d is gone; leaving", os.getpid(), cluster_pid)
        os._exit(1)

    threading.Thread(target=watch, name="qengine-cluster-watch", daemon=True).start()


def _init_worker(
    slots: Any,
    lock: Any,
    signer: Signer,
    affinity: int,
    worker_init: Callable[[], None] | None,
    task_modules: Sequence[str] = (),
    cluster_pid: int | None = None,
) -> None:
    """Runs once in each new worker process."""
    global _slots, _slot, _signer
    if cluster_pid is not None:
        _leave_with(cluster_pid)
    # Ctrl+C reaches the whole process group; the cluster, not its workers, decides
    # how to stop, and workers finish the task they are on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _slots = slots
    _slot = _claim_slot(slots, lock)
    _signer = signer
    cpus = _cpus_for(max(_slot, 0), affinity)
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    if worker_init is not None:
        worker_init()
    _import_task_modules(task_modules)
    gc.freeze()  # what the worker starts with lives as long as it: never traverse it again


def run_batch(batch: Sequence[Handoff]) -> HandBack:
    """Run packages one after the other in this worker; return their outcomes, slim."""
    assert _signer is not None, "worker not initialised"
    seqs: list[int] = []
    successes: list[bool] = []
    blobs: list[bytes] = []
    started: list[datetime] = []
    stopped: list[datetime] = []
    timed_out: list[bool] = []
    base = _slot * _FIELDS
    for seq, package, timeout_s in batch:
        if _slot >= 0:
            _slots[base + 2] = time.time()
            _slots[base + 1] = seq
        between_batches()  # a Django worker closes stale connections as around a request
        try:
            message = _signer.loads(package)
            message.timeout = timeout_s  # the cluster's decision: its own, else the default
            outcome = execute(message, measure=False)
        finally:
            if _slot >= 0:
                _slots[base + 1] = 0
        seqs.append(seq)
        successes.append(outcome.success)
        blobs.append(outcome.result_blob)
        started.append(outcome.started)
        stopped.append(outcome.stopped)
        timed_out.append(outcome.timed_out)
    between_batches()
    rss = rss_kb()  # once per hand-off: reading /proc is a few system calls
    return HandBack(os.getpid(), rss, seqs, successes, blobs, started, stopped, timed_out)


def _noop() -> int:
    return os.getpid()


class RecyclingExecutor(ProcessPoolExecutor):
    """A ProcessPoolExecutor that always replaces a worker that left after ``max_tasks_per_child``.

    CPython 3.11 to 3.13.x (gh-115634) decides whether to replace such a
    worker by a semaphore that counts finished tasks, not idle workers; under
    a backlog it can claim an idle worker that has already exited, spawn
    nothing, and leave queued work with no process to run it, for ever.
    Here every adjustment fills the pool back to ``max_workers``: the cluster
    starts all its workers up front anyway, so on-demand spawning buys nothing.
    """

    def _adjust_process_count(self) -> None:
        # Called under the executor's shutdown lock, from submit() and from the
        # manager thread after a worker exited.
        processes = self._processes  # type: ignore[attr-defined]
        while processes is not None and len(processes) < self._max_workers:  # type: ignore[attr-defined]
            self._spawn_process()  # type: ignore[attr-defined]


class SlotView:
    """What one worker is doing, read from the shared array by the cluster."""

    __slots__ = ("pid", "seq", "started")

    def __init__(self, pid: int, seq: int, started: float) -> None:
        self.pid, self.seq, self.started = pid, seq, started


class WorkerPool:
    """One ProcessPoolExecutor generation; replaced whole when it breaks or is retired."""

    generation = 0

    def __init__(
        self,
        *,
        workers: int,
        recycle: int,
        signer: Signer,
        affinity: int = 0,
        worker_init: Callable[[], None] | None = None,
        task_modules: TaskModules | None = None,
    ) -> None:
        WorkerPool.generation += 1
        self.generation = WorkerPool.generation
        self.workers = workers
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from a server that already imported the engine: fast (re)starts.
            context.set_forkserver_preload(list(WORKER_MODULES))
        self.slots = context.RawArray("d", (workers * 2 + 2) * _FIELDS)
        self.lock = context.Lock()
        self.task_modules = task_modules if task_modules is not None else TaskModules()
        self.executor = RecyclingExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(
                self.slots,
                self.lock,
                signer,
                affinity,
                worker_init,
                self.task_modules,
                os.getpid(),  # the cluster, which each worker watches (_leave_with)
            ),
            max_tasks_per_child=recycle or None,
        )
        self.processes: dict[int, BaseProcess] = {}
        self.broken = False
        self.retired = False

    def start(self) -> None:
        """Start every worker now rather than on the first task."""
        futures = [self.executor.submit(_noop) for _ in range(self.workers)]
        for future in futures:
            future.result(timeout=60)
        self.refresh()

    def submit(self, batch: Sequence[Handoff]) -> Future[HandBack]:
        return self.executor.submit(run_batch, batch)

    def refresh(self) -> list[int]:
        """Remember the worker processes (for exit codes after a crash); return new pids."""
        current = dict(getattr(self.executor, "_processes", None) or {})
        new = [pid for pid in current if pid not in self.processes]
        self.processes.update(current)
        return new

    @property
    def pids(self) -> list[int]:
        live = getattr(self.executor, "_processes", None) or {}
        return sorted(live)

    def running(self) -> list[SlotView]:
        """Slots whose worker is running a task right now."""
        views = []
        for index in range(len(self.slots) // _FIELDS):
            base = index * _FIELDS
            pid, seq, started = self.slots[base : base + _FIELDS]
            if pid and seq:
                views.append(SlotView(int(pid), int(seq), started))
        return views

    def crashed_pids(self) -> set[int]:
        """Workers that ended on their own (killed, crashed), not by the executor's SIGTERM."""
        crashed = set()
        for pid, process in self.processes.items():
            code = process.exitcode
            if code is not None and code not in (0, -signal.SIGTERM):
                crashed.add(pid)
        return crashed

    def kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def shutdown(self, *, wait: bool) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=not wait and self.broken)


def batch_sizes(count: int, workers: int, largest: int = 32) -> list[int]:
    """Split ``count`` tasks into hand-offs: one task each when few, up to ``largest`` when many.

    One task per hand-off keeps latency low; batches keep the executor's
    per-submission cost (~140 µs) from capping throughput under a backlog.
    """
    if count <= workers:
        return [1] * count
    size = min(largest, math.ceil(count / workers / 2))
    sizes = [size] * (count // size)
    if count % size:
        sizes.append(count % size)
    return sizes
