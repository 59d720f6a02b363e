"""The worker pool: a ProcessPoolExecutor plus a shared table of what each worker is running.

Each worker claims a slot in a shared array and writes ``(pid, seq,
started)`` there while it runs a task, so the guard can find a task that
overran its hard timeout and the process to kill, and after a crash tell
which task was running where.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

from ..lifecycle import between_batches
from ..signing import Signer
from ..task import Outcome
from .worker import execute, rss_kb

__all__ = ["RecyclingExecutor", "SlotView", "WorkerPool", "run_batch"]

log = logging.getLogger(__name__)

_FIELDS = 3  # pid, seq, started (epoch seconds)

# Set in each worker process by _init_worker.
_slots: Any = None
_slot = -1
_signer: Signer | None = None
_timeout: float | None = None


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


def _init_worker(
    slots: Any,
    lock: Any,
    signer: Signer,
    affinity: int,
    worker_init: Callable[[], None] | None,
    timeout: float | None = None,
) -> None:
    """Runs once in each new worker process."""
    global _slots, _slot, _signer, _timeout
    # Ctrl+C reaches the whole process group; the cluster, not its workers, decides
    # how to stop, and workers finish the task they are on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _slots = slots
    _slot = _claim_slot(slots, lock)
    _signer = signer
    _timeout = timeout
    cpus = _cpus_for(max(_slot, 0), affinity)
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    if worker_init is not None:
        worker_init()


def run_batch(batch: Sequence[tuple[int, bytes]]) -> list[tuple[Any, ...]]:
    """Run packages one after the other in this worker; return one slim outcome per task.

    Outcomes travel back without the task message (the cluster holds it):
    ``(seq, success, result_blob, started, stopped, pid, rss_kb, timed_out)``.
    """
    assert _signer is not None, "worker not initialised"
    done: list[tuple[int, Outcome]] = []
    base = _slot * _FIELDS
    for seq, package in batch:
        if _slot >= 0:
            _slots[base + 2] = time.time()
            _slots[base + 1] = seq
        between_batches()  # a Django worker closes stale connections as around a request
        try:
            message = _signer.loads(package)
            if message.timeout is None:
                message.timeout = _timeout  # the cluster's default applies
            done.append((seq, execute(message, measure=False)))
        finally:
            if _slot >= 0:
                _slots[base + 1] = 0
    between_batches()
    rss = rss_kb()  # once per hand-off: reading /proc is a few system calls
    return [
        (seq, o.success, o.result_blob, o.started, o.stopped, o.pid, rss, o.timed_out)
        for seq, o in done
    ]


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
        timeout: float | None = None,
    ) -> None:
        WorkerPool.generation += 1
        self.generation = WorkerPool.generation
        self.workers = workers
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            # Workers fork from a server that already imported the engine: fast (re)starts.
            context.set_forkserver_preload(["qengine.cluster.pool"])
        self.slots = context.RawArray("d", (workers * 2 + 2) * _FIELDS)
        self.lock = context.Lock()
        self.executor = RecyclingExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.slots, self.lock, signer, affinity, worker_init, timeout),
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

    def submit(self, batch: Sequence[tuple[int, bytes]]) -> Future[list[tuple[Any, ...]]]:
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
