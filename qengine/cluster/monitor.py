"""The monitor thread: finished hand-offs → ``finish`` → acknowledgements and counters."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..errors import BrokerError, StoreError
from ..outcomes import failed_outcome
from ..task import Outcome
from .state import Counters, Held, Holdings

if TYPE_CHECKING:
    from ..brokers.base import Broker
    from ..config import Config
    from .pool import HandBack
    from .workers import Results

__all__ = ["Monitor"]

log = logging.getLogger(__name__)


RESULT_BATCH = 256
"""Most finished hand-offs saved in one transaction."""


class Monitor:
    """The monitor thread: finished hand-offs → ``finish`` → acknowledgements and counters.

    Owns the reading end of ``results``, which holds two kinds of items:
    ``(seqs, future)`` from the pool, and ``(None, [(held, outcome), ...])``
    made by the cluster itself (tasks given up, timed out or whose worker
    died). Each batch is saved with ``finish`` (``qengine.outcomes.finish``
    bound to the cluster's store, notifier and reporters), retried while the
    store is down; then it acknowledges what is done, releases it from the
    holdings and counts it, retrying acknowledgements the broker refused.
    Hand-offs that came back without outcomes go to ``report_broken`` (the
    guard then replaces the pool).
    """

    def __init__(
        self,
        *,
        config: Config,
        broker: Broker,
        holdings: Holdings,
        results: Results,
        finish: Callable[[list[Outcome]], None],
        counters: Counters,
        note_worker: Callable[[int, int], None],
        report_broken: Callable[[list[int]], None],
        label: str,
    ) -> None:
        self.config = config
        self.broker = broker
        self.holdings = holdings
        self.results = results
        self.finish = finish
        self.counters = counters
        self.note_worker = note_worker
        self.report_broken = report_broken
        self.label = label
        self.thread = threading.Thread(target=self.run, name="qengine-monitor", daemon=True)
        self.done = threading.Event()
        self.unacked: list[tuple[list[str], list[int]]] = []
        self.ack_backoff_s = 0.1
        self.ack_retry_at = 0.0

    def run(self) -> None:
        log.info("%s monitoring at %s", self.label, threading.get_native_id())
        busy = False
        with lifecycle.thread_connections():
            while not self.done.is_set():
                try:
                    done = self.tick()
                    if busy and not done:
                        # A run of work ended: a whole tick found nothing (see lifecycle).
                        lifecycle.between_batches()
                    busy = bool(done)
                except Exception:
                    # The monitor must outlive any one bad batch: log it and keep going.
                    log.exception("%s monitor error; continuing", self.label)
                    lifecycle.between_batches()
        log.info("%s stopped monitoring results", self.label)

    def tick(self, wait_s: float = 0.2) -> int:
        """Process everything finished so far (waiting up to ``wait_s`` for the first)."""
        self._retry_acks()
        results = self.results
        try:
            first = results.get(timeout=wait_s)
        except queue.Empty:
            return 0
        items = [first]
        while len(items) < RESULT_BATCH:
            try:
                items.append(results.get_nowait())
            except queue.Empty:
                break
        outcomes: list[tuple[Held, Outcome]] = []
        broken: list[int] = []
        for seqs, payload in items:
            if seqs is None:
                outcomes.extend(payload)
            else:
                self._collect(seqs, payload, outcomes, broken)
        if broken:
            self.report_broken(broken)
        if outcomes:
            self.holdings.settling(held.seq for held, _ in outcomes)
            self.settle(outcomes)
        return len(outcomes)

    def _collect(
        self,
        seqs: list[int],
        future: Future[Any],
        outcomes: list[tuple[Held, Outcome]],
        broken: list[int],
    ) -> None:
        holdings = self.holdings
        # A replaced pool cancels the hand-offs it had not started. Ask first: exception()
        # raises for a cancelled future, and the whole batch read with it would be dropped.
        if future.cancelled():
            broken.extend(seqs)
            return
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            broken.extend(seqs)
            return
        if error is not None:
            # The hand-off itself failed (not the task): fail its tasks with the reason.
            for seq in seqs:
                held = holdings.get(seq)
                if held is not None:
                    reason = f"the worker failed: {error!r}"
                    outcomes.append((held, failed_outcome(held.message, reason)))
            return
        back: HandBack = future.result()
        pid, rss = back.pid, back.rss_kb
        self.note_worker(pid, rss)
        if back.seqs:
            holdings.note_run(len(back.seqs), (back.stopped[-1] - back.started[0]).total_seconds())
        for seq, success, blob, started, stopped, timed_out in back.rows():
            held = holdings.get(seq)
            if held is None:
                continue
            outcome = Outcome(
                message=held.message, success=success, result_blob=blob, started=started,
                stopped=stopped, pid=pid, rss_kb=rss, timed_out=timed_out,
            )  # fmt: skip
            outcomes.append((held, outcome))

    def settle(self, pairs: list[tuple[Held, Outcome]]) -> None:
        """Save, then acknowledge what is done; failed tasks are left for redelivery."""
        config = self.config
        try:
            self._save([outcome for _, outcome in pairs])
        except Exception:
            # Not a store outage (those are retried in _save) but something unforeseen, or
            # the store still down at stop. Held, these tasks would have their leases renewed
            # for ever and a stop would wait on them; let go unacknowledged, the broker hands
            # them out again after ``retry``, and a task whose success was saved is then
            # acknowledged without running.
            log.exception(
                "%s: could not finish %d task(s); they will be delivered again",
                self.label, len(pairs),
            )  # fmt: skip
            self.holdings.release([held.seq for held, _ in pairs])
            return
        counters = self.counters
        acks: list[str] = []
        seqs: list[int] = []
        for held, outcome in pairs:
            message = outcome.message
            seqs.append(held.seq)
            ack_failure = (
                config.ack_failures if message.ack_failure is None else message.ack_failure
            )
            out_of_attempts = bool(config.max_attempts) and (
                message.attempt_count >= config.max_attempts
            )
            if outcome.success or ack_failure or out_of_attempts or held.given_up:
                acks.append(held.delivery.ack_id)
            counters.processed += 1
            if not outcome.success:
                counters.failed += 1
        self._acknowledge(acks, seqs)

    def _save(self, outcomes: list[Outcome]) -> None:
        delay = 0.2
        while True:
            try:
                self.finish(outcomes)
                return
            except StoreError as exc:
                # Keep the results (and the leases) until the store is back; if the cluster
                # must stop first, the unacknowledged packages are delivered again later.
                if self.done.is_set():
                    log.error("%s: result store down while stopping: %s", self.label, exc)
                    raise
                log.warning("%s: cannot save results (%s); retrying", self.label, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _acknowledge(self, acks: list[str], seqs: list[int]) -> None:
        try:
            if acks:
                self.broker.acknowledge_many(acks)
        except BrokerError as exc:
            # The tasks stay held (their leases renewed) until the broker is back.
            if not self.unacked:
                log.warning("%s: cannot acknowledge (%s); will retry", self.label, exc)
            self.unacked.append((acks, seqs))
            self.ack_backoff_s = min(self.ack_backoff_s * 2, 5.0)
            self.ack_retry_at = time.monotonic() + self.ack_backoff_s
            return
        self.ack_backoff_s = 0.1
        self.holdings.release(seqs)

    def unacked_count(self) -> int:
        return sum(len(seqs) for _, seqs in self.unacked)

    def _retry_acks(self) -> None:
        if not self.unacked or time.monotonic() < self.ack_retry_at:
            return
        pending, self.unacked = self.unacked, []
        for acks, seqs in pending:
            self._acknowledge(acks, seqs)
