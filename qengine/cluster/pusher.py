"""The pusher thread: broker → verify, unpack → worker pool; holds at most queue_limit tasks.

A package that does not verify or unpack (``Signer.loads``, the sole
unpickler, says why) is dropped from the broker, logged once with the
reason and counted in ``Stat.rejected``; the batch around it goes on.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .. import lifecycle
from ..errors import BrokerError, SignatureError, StoreError
from ..task import TaskMessage
from .state import Held

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["Pusher"]

log = logging.getLogger(__name__)

RECEIVE_WAIT_S = 0.5
"""Longest the pusher waits for room in memory before it looks at the broker again."""


class Pusher:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.thread = threading.Thread(target=self.run, name="qengine-pusher", daemon=True)
        self.backoff_s = 0.5

    def run(self) -> None:
        cluster = self.cluster
        log.info("%s pushing tasks at %s", cluster.label, threading.get_native_id())
        with lifecycle.thread_connections():
            self._loop()
        log.info("%s stopped pushing tasks", cluster.label)

    def _loop(self) -> None:
        cluster = self.cluster
        busy = False
        while not cluster.stop_event.is_set():
            try:
                taken = self.tick()
                if busy and not taken:
                    lifecycle.between_batches()  # a run of work ended (see lifecycle)
                busy = bool(taken)
                self.backoff_s = 0.5
            except BrokerError as exc:
                # An outage must not end the cluster: wait, then try again.
                log.warning("%s cannot reach the broker (%s); retrying", cluster.label, exc)
                lifecycle.between_batches()
                cluster.stop_event.wait(self.backoff_s)
                self.backoff_s = min(self.backoff_s * 2, 5.0)
            except Exception:
                log.exception("%s pusher error; continuing", cluster.label)
                lifecycle.between_batches()
                cluster.stop_event.wait(1.0)

    def tick(self) -> int:
        """Take what fits from the broker and hand it to the pool; return how many were taken."""
        cluster = self.cluster
        holdings = cluster.holdings
        room = holdings.room()
        if room <= 0:
            holdings.wait_for_room(RECEIVE_WAIT_S)
            return 0
        broker = cluster.broker
        deliveries = broker.receive(
            count=min(room, cluster.config.bulk), timeout=broker.receive_wait_s
        )
        if not deliveries:
            if cluster.run_once and not len(holdings) and not cluster.broker.queue_size():
                log.info("%s: queue is empty, stopping (run once)", cluster.label)
                cluster.stop_event.set()
            return 0
        ready: list[Held] = []
        for delivery in deliveries:
            try:
                message = cluster.signer.loads(delivery.package, TaskMessage)
            except SignatureError as exc:
                cluster.rejected += 1
                log.error(
                    "%s rejected package %s (dropped, never run): %s", cluster.label,
                    delivery.ack_id, exc,
                )  # fmt: skip
                cluster.broker.fail(delivery.ack_id)
                continue
            if delivery.count > 1:
                cluster.redeliveries += 1
            message.attempt_count = delivery.count
            held = Held(seq=holdings.next_seq(), delivery=delivery, message=message)
            if delivery.count > 1 and self._already_done(held):
                continue
            limit = cluster.config.max_attempts
            if limit and delivery.count > limit:
                # Delivered again after its last allowed attempt (its cluster died before
                # acknowledging): give it up instead of running it once more.
                holdings.add([held])
                cluster.give_up(held, f"gave up after {limit} attempts (max_attempts)")
                continue
            ready.append(held)
        if ready:
            holdings.add(ready)
            cluster.dispatch(ready)
        return len(deliveries)

    def _already_done(self, held: Held) -> bool:
        """A redelivered task whose success is stored is acknowledged without running again."""
        cluster = self.cluster
        try:
            stored = cluster.store.get(held.message.id)
        except StoreError:
            return False  # run it; the store keeps the first success anyway
        if stored is None or not stored.success:
            return False
        log.info(
            "%s: task %s [%s] was redelivered but already succeeded; acknowledging",
            cluster.label, held.message.name, held.message.id,
        )  # fmt: skip
        cluster.broker.acknowledge(held.delivery.ack_id)
        return True
