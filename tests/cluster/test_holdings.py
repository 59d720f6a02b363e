"""Room for the pusher: queue_limit counts tasks waiting or running, not results being saved."""

from __future__ import annotations

from qengine.brokers.base import Delivery
from qengine.cluster.state import SETTLING_CAP, Held, Holdings
from qengine.task import TaskMessage, new_id


def held(holdings: Holdings) -> Held:
    seq = holdings.next_seq()
    message = TaskMessage(id=new_id()[0], name="t", func="math.floor", args=(1.5,))
    return Held(seq=seq, delivery=Delivery(f"ack-{seq}", b""), message=message)


def test_a_settling_task_frees_its_slot_until_it_is_released() -> None:
    holdings = Holdings(limit=4)
    items = [held(holdings) for _ in range(4)]
    holdings.add(items)
    assert holdings.room() == 0

    holdings.settling([items[0].seq, items[1].seq])
    assert holdings.room() == 2  # their results are being saved: two more may come in
    assert len(holdings) == 4  # still held: acknowledged only after the save

    holdings.release([items[0].seq])
    assert holdings.room() == 2
    holdings.release([items[2].seq])  # released without settling (left to the broker)
    assert holdings.room() == 3


def test_settling_tasks_are_bounded_on_their_own() -> None:
    holdings = Holdings(limit=4)
    items = [held(holdings) for _ in range(SETTLING_CAP)]
    holdings.add(items)
    holdings.settling(item.seq for item in items[:-1])
    assert holdings.room() == 4 - 1  # one still running
    holdings.settling([items[-1].seq])
    assert holdings.room() == 0  # the store or broker fell behind: take no more
    holdings.release(item.seq for item in items[:10])
    assert holdings.room() == 4


def test_a_task_already_released_does_not_count_as_settling() -> None:
    holdings = Holdings(limit=2)
    item = held(holdings)
    holdings.add([item])
    holdings.release([item.seq])
    holdings.settling([item.seq])  # a late report of a task let go
    assert holdings.room() == 2
