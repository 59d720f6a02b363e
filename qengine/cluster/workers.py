"""The cluster's current worker pool: started, replaced whole, and handed the held tasks."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from .pool import WorkerPool, batch_sizes
from .state import Held

__all__ = ["Results", "Workers"]

log = logging.getLogger(__name__)

Results = queue.SimpleQueue[tuple[Any, Any]]
"""The monitor's inbox: ``(seqs, future)`` per finished hand-off, and
``(None, [(held, outcome), ...])`` for tasks failed without a run."""


class Workers:
    """The current worker pool and every hand-off of held tasks to it.

    Owns the current ``WorkerPool`` (``renew`` replaces it whole: first
    start, a crash, a retirement for memory; the guard decides when), the
    hand-offs (each one, once finished, goes onto ``results`` for the
    monitor), the reports of hand-offs that came back without outcomes
    (which the guard takes), each worker's last memory reading, and the
    worker pids already announced.
    """

    def __init__(self, make_pool: Callable[[], WorkerPool], results: Results, label: str) -> None:
        self._make_pool = make_pool
        self.results = results
        self.label = label
        self._pool: WorkerPool | None = None
        self.rss_kb: dict[int, int] = {}
        """Each worker's resident memory at its last hand-off (for ``max_rss``)."""
        self.announced: set[int] = set()
        self._broken: set[int] = set()
        self._lock = threading.Lock()

    @property
    def pool(self) -> WorkerPool:
        """The pool new work goes to."""
        assert self._pool is not None, "no pool yet: renew() starts the first"
        return self._pool

    @property
    def pids(self) -> list[int]:
        return self._pool.pids if self._pool is not None else []

    def renew(self) -> WorkerPool:
        """Start a fresh pool for new work (first start, crash, or memory retirement)."""
        pool = self._make_pool()
        pool.start()
        self.announced.update(pool.pids)
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
            batch = [(held.seq, held.delivery.package, held.timeout_s) for held in chunk]
            for held in chunk:
                pool.task_modules.note(held.message.func)
            try:
                future = pool.submit(batch)
            except RuntimeError:
                # The pool broke or was retired between two hand-offs; the guard's
                # replacement runs every task still marked with this pool.
                for held in chunk:
                    held.pool = pool
                self.report_broken([held.seq for held in chunk])
                continue
            for held in chunk:
                held.pool = pool
                held.future = future
            seqs = [held.seq for held in chunk]
            future.add_done_callback(partial(self._handed_back, seqs))

    def _handed_back(self, seqs: list[int], future: Future[Any]) -> None:
        self.results.put((seqs, future))

    def report_broken(self, seqs: list[int]) -> None:
        """Hand-offs that came back without outcomes (from the monitor, or refused here)."""
        with self._lock:
            self._broken.update(seqs)

    def take_broken(self) -> set[int]:
        """The reports since the last call (the guard's)."""
        with self._lock:
            reported, self._broken = self._broken, set()
        return reported

    def note_worker(self, pid: int, rss_kb: int) -> None:
        self.rss_kb[pid] = rss_kb

    def recycled(self) -> list[int]:
        """Workers the current pool started since the last look (after ``recycle`` hand-offs)."""
        new = [pid for pid in self.pool.refresh() if pid not in self.announced]
        self.announced.update(new)
        return new

    def shutdown(self) -> None:
        """Let the current pool finish what it was handed, then end its workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
