"""One run per schedule slot, even when a claim's commit fails after Redis took the task."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

import qengine
from qengine.brokers import make_broker
from qengine.cluster.scheduler import Scheduler
from qengine.runtime import get_signer, get_store
from qengine.schedules import Schedule, schedule, slot_task_id

pytestmark = pytest.mark.redis


@pytest.fixture
def scheduler(tmp_path, redis_url, redis_client, cluster_name):
    config = qengine.configure(
        store=f"sqlite:///{tmp_path}/slots.sqlite3", broker=redis_url, secret_key="slots",
        name=cluster_name,
    )  # fmt: skip
    broker = make_broker(config)
    # The parts the scheduler thread works with, without a running cluster.
    parts = SimpleNamespace(
        config=config, store=get_store(config), broker=broker, signer=get_signer(config),
        label=cluster_name,
    )  # fmt: skip
    thread = Scheduler(**vars(parts), stop_event=threading.Event())
    # The tests read the parts back as ``scheduler.cluster``.
    yield SimpleNamespace(cluster=parts, tick=thread.tick)
    broker.delete_queue()
    for key in redis_client.scan_iter(f"*{cluster_name}*"):
        redis_client.delete(key)


def test_a_slot_queued_before_its_claim_failed_to_commit_is_not_queued_again(
    scheduler, monkeypatch
):
    now = datetime.now(UTC)
    item = schedule("math.floor", 1.5, name="once", next_run=now - timedelta(seconds=1))
    broker = scheduler.cluster.broker
    enqueue_unique = broker.enqueue_unique

    def enqueued_then_commit_lost(package, key, *args):
        enqueue_unique(package, key, *args)
        raise RuntimeError("connection lost before COMMIT")  # the claim rolls back

    monkeypatch.setattr(broker, "enqueue_unique", enqueued_then_commit_lost)
    scheduler.tick(now)
    assert Schedule.get(item.id) is not None, "the claim rolled back: the slot is still due"
    assert broker.queue_size() == 1

    monkeypatch.setattr(broker, "enqueue_unique", enqueue_unique)
    scheduler.tick(now)
    assert Schedule.get(item.id) is None, "claimed this time"
    assert broker.queue_size() == 1, "the slot's task was recognised, not queued twice"
    [delivery] = broker.receive(count=10, timeout=0.1)
    message = scheduler.cluster.signer.loads(delivery.package)
    assert message.id == slot_task_id(scheduler.cluster.config.name, item.id, item.next_run)


def test_each_slot_of_a_schedule_has_its_own_task_id() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    ids = {slot_task_id("c", 7, first + timedelta(hours=n)) for n in range(3)}
    assert len(ids) == 3
    assert slot_task_id("c", 7, first) == slot_task_id("c", 7, first)
    assert slot_task_id("c", 7, first) != slot_task_id("other", 7, first)
    assert all(len(i) == 32 for i in ids)
