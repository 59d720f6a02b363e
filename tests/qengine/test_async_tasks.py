"""``async_tasks``: many tasks in one call and one broker round trip, ids in order."""

from __future__ import annotations

import pytest

import qengine
from qengine.runtime import get_broker, get_signer
from qengine.signals import pre_enqueue
from qengine.task import TaskMessage


class CountingBroker:
    """Counts the broker calls around the shared broker (the round trips asked for)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.single = self.batches = 0
        broker = get_broker()
        enqueue, enqueue_many = broker.enqueue, broker.enqueue_many

        def one(package: bytes) -> str:
            self.single += 1
            return enqueue(package)

        def many(packages: list[bytes]) -> list[str]:
            self.batches += 1
            return enqueue_many(packages)

        monkeypatch.setattr(broker, "enqueue", one)
        monkeypatch.setattr(broker, "enqueue_many", many)


def queued_messages() -> list[TaskMessage]:
    broker, signer = get_broker(), get_signer()
    deliveries = broker.receive(count=1000, timeout=0)
    return [signer.loads(d.package, TaskMessage) for d in deliveries]


def test_many_tasks_go_in_one_batch_with_their_ids_in_order(monkeypatch) -> None:
    counted = CountingBroker(monkeypatch)
    seen: list[str] = []
    monkeypatch.setattr(pre_enqueue, "receivers", dict(pre_enqueue.receivers))
    pre_enqueue.connect(lambda sender, task, **_: seen.append(task.id), weak=False)

    ids = qengine.async_tasks(
        [("math.floor", (1.5,)), ("math.pow", [2, 3]), ("tests.tasks.add", (1,), {"b": 2}),
         "math.pi.__class__"],
        group="batch",
        timeout=30,
    )  # fmt: skip

    assert (counted.batches, counted.single) == (1, 0)
    assert seen == ids  # pre_enqueue once per task, in order
    messages = queued_messages()
    assert [m.id for m in messages] == ids
    assert [m.func for m in messages][:3] == ["math.floor", "math.pow", "tests.tasks.add"]
    assert messages[2].kwargs == {"b": 2}
    assert {m.group for m in messages} == {"batch"}
    assert {m.timeout for m in messages} == {30}


def test_a_bad_call_queues_nothing() -> None:
    with pytest.raises(TypeError, match="call 1"):
        qengine.async_tasks([("math.floor", (1.5,)), ("math.floor", 1.5)])
    with pytest.raises(TypeError, match=r"'b' not an option.*kwargs"):
        qengine.async_tasks([("tests.tasks.add", (1,))], b=2)
    with pytest.raises(ValueError, match="timeout"):
        qengine.async_tasks([("math.floor", (1.5,))], timeout=-1)
    assert qengine.queue_size() == 0


def test_sync_mode_runs_each_task_in_order() -> None:
    ids = qengine.async_tasks([("math.floor", (1.5,)), ("math.pow", (2, 3))], sync=True)
    assert [qengine.result(task_id) for task_id in ids] == [1, 8.0]
    assert qengine.queue_size() == 0


def test_an_empty_batch_queues_nothing() -> None:
    assert qengine.async_tasks([]) == []
