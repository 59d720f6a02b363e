"""The pusher thread: broker → verify, unpack → worker pool; holds at most queue_limit tasks.

A package that does not verify or unpack (``Signer.loads``, the sole
unpickler, says why) is dropped from the broker, logged once with the
reason and counted in ``Stat.rejected``; the batch around it goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import lifecycle
from ..errors import BrokerError, SignatureError, StoreError
from ..task import TaskMessage
from .state import Counters, GiveUp, Held, Holdings, task_timeout

if TYPE_CHECKING:
    from ..brokers.base import Broker
    from ..config import Config
    from ..signing import Signer
    from ..store import ResultStore

__all__ = ["Pusher"]

log = logging.getLogger(__name__)

RECEIVE_WAIT_S = 0.5
"""Longest the pusher waits for room in memory before it looks at the broker again."""


class Pusher:
    """The pusher thread: broker → held tasks → the pool.

    Owns the receiving end of the broker: it takes as many packages as the
    holdings have room for, verifies and unpacks each (one that fails is
    dropped, counted and logged once, never run), decides its timeout
    (``task_timeout``), acknowledges a redelivered
    task whose success is stored already, gives up one delivered past
    ``max_attempts``, and dispatches the rest. With ``run_once`` it stops the
    cluster once the queue is empty and nothing is held.
    """

    def __init__(
        self,
        *,
        config: Config,
        broker: Broker,
        signer: Signer,
        store: ResultStore,
        holdings: Holdings,
        counters: Counters,
        dispatch: Callable[[list[Held]], None],
        give_up: GiveUp,
        stop_event: threading.Event,
        label: str,
        run_once: bool = False,
    ) -> None:
        self.config = config
        self.broker = broker
        self.signer = signer
        self.store = store
        self.holdings = holdings
        self.counters = counters
        self.dispatch = dispatch
        self.give_up = give_up
        self.stop_event = stop_event
        self.label = label
        self.run_once = run_once
        self.thread = threading.Thread(target=self.run, name="qengine-pusher", daemon=True)
        self.backoff_s = 0.5

    def run(self) -> None:
        log.info("%s pushing tasks at %s", self.label, threading.get_native_id())
        with lifecycle.thread_connections():
            self._loop()
        log.info("%s stopped pushing tasks", self.label)

    def _loop(self) -> None:
        busy = False
        while not self.stop_event.is_set():
            try:
                taken = self.tick()
                if busy and not taken:
                    lifecycle.between_batches()  # a run of work ended (see lifecycle)
                busy = bool(taken)
                self.backoff_s = 0.5
            except BrokerError as exc:
                # An outage must not end the cluster: wait, then try again.
                log.warning("%s cannot reach the broker (%s); retrying", self.label, exc)
                lifecycle.between_batches()
                self.stop_event.wait(self.backoff_s)
                self.backoff_s = min(self.backoff_s * 2, 5.0)
            except Exception:
                log.exception("%s pusher error; continuing", self.label)
                lifecycle.between_batches()
                self.stop_event.wait(1.0)

    def tick(self) -> int:
        """Take what fits from the broker and hand it to the pool; return how many were taken."""
        holdings = self.holdings
        room = holdings.room()
        if room <= 0:
            holdings.wait_for_room(RECEIVE_WAIT_S)
            return 0
        broker = self.broker
        deliveries = broker.receive(
            count=min(room, self.config.receive_count), timeout=broker.receive_wait_s
        )
        if not deliveries:
            if self.run_once and not len(holdings) and not broker.queue_size():
                log.info("%s: queue is empty, stopping (run once)", self.label)
                self.stop_event.set()
            return 0
        counters = self.counters
        limit = self.config.max_attempts
        default_timeout_s = self.config.timeout
        ready: list[Held] = []
        for delivery in deliveries:
            try:
                message = self.signer.loads(delivery.package, TaskMessage)
            except SignatureError as exc:
                counters.rejected += 1
                log.error(
                    "%s rejected package %s (dropped, never run): %s", self.label,
                    delivery.ack_id, exc,
                )  # fmt: skip
                broker.fail(delivery.ack_id)
                continue
            if delivery.count > 1:
                counters.redeliveries += 1
            message.attempt_count = delivery.count
            held = Held(
                seq=holdings.next_seq(), delivery=delivery, message=message,
                timeout_s=task_timeout(message, default_timeout_s),
            )  # fmt: skip
            if delivery.count > 1 and self._already_done(held):
                continue
            if limit and delivery.count > limit:
                # Delivered again after its last allowed attempt (its cluster died before
                # acknowledging): give it up instead of running it once more.
                holdings.add([held])
                self.give_up(held, f"gave up after {limit} attempts (max_attempts)")
                continue
            ready.append(held)
        if ready:
            holdings.add(ready)
            self.dispatch(ready)
        return len(deliveries)

    def _already_done(self, held: Held) -> bool:
        """A redelivered task whose success is stored is acknowledged without running again."""
        try:
            stored = self.store.get(held.message.id)
        except StoreError:
            return False  # run it; the store keeps the first success anyway
        if stored is None or not stored.success:
            return False
        log.info(
            "%s: task %s [%s] was redelivered but already succeeded; acknowledging",
            self.label, held.message.name, held.message.id,
        )  # fmt: skip
        self.broker.acknowledge(held.delivery.ack_id)
        return True
