"""The cluster's reporting thread: failed tasks reach the error reporters off the monitor thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from ..config import Config
from ..reporters import report_failures
from ..runtime import get_reporters
from ..task import Outcome

__all__ = ["ReportingThread"]

log = logging.getLogger(__name__)

WAITING_LIMIT = 10_000
"""Most failures waiting for the reporters; more are dropped (and counted) meanwhile."""


class ReportingThread:
    """Hands failed outcomes to ``report_failures`` in a thread of its own.

    Owns that thread and the queue of failures waiting for it; the monitor's
    ``finish`` puts them there through ``submit`` (its ``report``), and the
    cluster's stop sends what is left.

    A reporter may block: a synchronous HTTP transport, a slow plugin, a
    service that is down and times out. In the monitor thread that would hold
    up saving and acknowledging every batch behind it. The queue is bounded:
    while the reporters lag ``limit`` failures behind, new ones are dropped
    with a warning rather than kept without end. The results themselves are
    saved either way; only their reports are lost.
    """

    def __init__(self, config: Config, limit: int = WAITING_LIMIT) -> None:
        self.config = config
        self.limit = limit
        self.dropped = 0
        self._waiting = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="qengine-reporter", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, outcomes: Sequence[Outcome], config: Config) -> None:
        """Queue the failed ones among ``outcomes`` (the signature of ``report_failures``)."""
        if not config.error_reporter:
            return
        failed = [outcome for outcome in outcomes if not outcome.success]
        if not failed:
            return
        with self._lock:
            if self._waiting + len(failed) > self.limit:
                if not self.dropped:
                    log.warning(
                        "error reporters are %d failures behind; dropping reports until "
                        "they catch up (the results are saved)", self._waiting,
                    )  # fmt: skip
                self.dropped += len(failed)
                return
            self._waiting += len(failed)
        self._queue.put(failed)

    def stop(self, timeout: float) -> None:
        """Send what is queued, waiting at most ``timeout`` seconds for the reporters."""
        if not self.thread.is_alive():
            return
        self._queue.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("stopping with %d failure report(s) not yet sent", self._waiting)
        if self.dropped:
            log.warning("%d failure report(s) dropped while the reporters lagged", self.dropped)

    def _run(self) -> None:
        while True:
            failed = self._queue.get()
            if failed is None:
                return
            try:
                report_failures(failed, self.config, get_reporters)
            except Exception:  # report_failures logs plugin errors; this is a last guard
                log.exception("reporting %d failure(s) failed", len(failed))
            finally:
                with self._lock:
                    self._waiting -= len(failed)
