"""The scheduler thread: due schedules → tasks, each slot once across every cluster."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..api import prepare
from ..task import new_id

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from ..brokers.base import Broker
    from ..config import Config
    from ..schedules import Schedule
    from ..signing import Signer
    from ..store import ResultStore

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

LOOK_AGAIN_S = 0.5
"""Longest sleep between two looks: a schedule created meanwhile starts within this."""


class Scheduler:
    """The scheduler thread: due schedules → tasks on the broker, each slot once.

    Owns nothing but its thread: the schedules are rows in the store, claimed
    per slot in a transaction (``qengine.schedules.claim_due``), so that of
    every cluster only one queues a slot's task; that task's id is the slot's
    own (``slot_task_id``), so a retried claim is recognised rather than
    queued twice.
    """

    def __init__(
        self,
        *,
        config: Config,
        broker: Broker,
        store: ResultStore,
        signer: Signer,
        stop_event: threading.Event,
        label: str,
    ) -> None:
        self.config = config
        self.broker = broker
        self.store = store
        self.signer = signer
        self.stop_event = stop_event
        self.label = label
        # Whether a claim's transaction can take the enqueue too (a SQL broker on the store's
        # database); else the broker's unique enqueue keeps a slot from being queued twice.
        self.same_database = broker.enqueues_with(config.store)
        self.thread = threading.Thread(target=self.run, name="qengine-scheduler", daemon=True)

    def run(self) -> None:
        log.info("%s scheduling at %s", self.label, threading.get_native_id())
        with lifecycle.thread_connections():
            while not self.stop_event.is_set():
                try:
                    wait_s = self.tick(datetime.now(UTC))
                except Exception as exc:
                    # A store outage or a broken schedule must not end the thread.
                    log.warning("%s scheduler error (%s); retrying", self.label, exc)
                    lifecycle.between_batches()
                    wait_s = 2.0
                self.stop_event.wait(wait_s)
        log.info("%s stopped scheduling", self.label)

    def tick(self, now: datetime) -> float:
        """Run what is due at ``now``; return how long to sleep before looking again."""
        config = self.config
        due_in = self._due_in(now)
        if due_in == 0:
            # Claims need SQLAlchemy (a transaction per slot): loaded once something is due.
            from ..schedules import claim_due

            claim_due(
                self.store.engine, now, config.name, self._enqueue,
                catch_up=config.catch_up, tz=config.zone,
            )  # fmt: skip
            due_in = self._due_in(datetime.now(UTC))
        return LOOK_AGAIN_S if due_in is None else min(max(due_in, 0.01), LOOK_AGAIN_S)

    def _due_in(self, now: datetime) -> float | None:
        """Seconds until this cluster's next schedule is due (0 if one is), None if it has
        none: on the store's own SQLite file without SQLAlchemy, so that a cluster with
        nothing due never loads it."""
        file = self.store.lite_file
        if file is None:
            from ..schedules import seconds_until_due

            return seconds_until_due(self.store.engine, now, self.config.name)
        soonest = file.next_due(self.config.name)
        return None if soonest is None else max(0.0, (soonest - now).total_seconds())

    def _enqueue(self, schedule: Schedule, *, group: str, conn: Connection, slot: datetime) -> str:
        config = self.config
        options: dict[str, Any] = dict(schedule.q_options or {})
        # One broker per cluster here: a broker_name always falls back to this cluster's.
        options.pop("broker_name", None)
        options.setdefault("group", group)
        if schedule.hook:
            options.setdefault("hook", schedule.hook)
        options["sync"] = False  # a schedule's task always goes through the broker
        from ..schedules import slot_task_id

        # One id per run of a schedule: if the claim's commit fails after a broker outside its
        # transaction took the task, the retried claim's enqueue is recognised, not run twice.
        ident = (slot_task_id(config.name, schedule.id, slot), new_id()[1])
        message = prepare(
            schedule.func, tuple(schedule.args), dict(schedule.kwargs), options, config, ident
        )
        package = self.signer.dumps(message)
        if self.same_database:
            # The claim holds SQLite's write lock: enqueue through its transaction (which
            # also makes the enqueue atomic with the claim on any database).
            self.broker.enqueue_in(conn, package)
        elif self.broker.enqueue_unique(package, message.id) is None:
            log.warning(
                "%s: schedule %s slot %s was queued already (a claim that failed to commit); "
                "not queued again", self.label, schedule.name or schedule.id, slot.isoformat(),
            )  # fmt: skip
            return message.id
        log.info(
            "%s: schedule %s queued task %s [%s]",
            self.label, schedule.name or schedule.id, message.name, message.id,
        )  # fmt: skip
        return message.id
