"""Room for the pusher: queue_limit counts tasks waiting or running, not results being saved."""

from __future__ import annotations

from qengine.brokers.base import Delivery
from qengine.cluster.state import HELD_WORK_S, SETTLING_CAP, Held, Holdings
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


def test_without_workers_the_room_is_the_limit() -> None:
    holdings = Holdings(limit=64)
    holdings.note_run(10, 10.0)  # no workers given: the speed of tasks changes nothing
    assert holdings.room() == 64


def test_a_cluster_holds_two_per_worker_until_it_knows_how_fast_tasks_run() -> None:
    holdings = Holdings(limit=64, workers=2)
    assert holdings.room() == 4
    holdings.add([held(holdings) for _ in range(4)])
    assert holdings.room() == 0


def test_fast_tasks_fill_the_limit_and_slow_ones_leave_work_for_other_clusters() -> None:
    fast = Holdings(limit=64, workers=2)
    fast.note_run(32, 32 * 0.0001)  # no-ops: 0.1 ms each
    assert fast.room() == 64

    slow = Holdings(limit=64, workers=2)
    slow.note_run(1, 2.0)  # a task of 2 s: one running and one ready per worker
    assert slow.room() == 4

    medium = Holdings(limit=64, workers=2)
    medium.note_run(10, 10 * HELD_WORK_S / 8)  # 8 tasks fill HELD_WORK_S of one worker
    assert medium.room() == 16

    tiny_limit = Holdings(limit=3, workers=2)  # never more than queue_limit
    tiny_limit.note_run(1, 2.0)
    assert tiny_limit.room() == 3


def test_the_estimate_follows_a_change_of_task_speed() -> None:
    holdings = Holdings(limit=64, workers=2)
    holdings.note_run(32, 32 * 0.0001)
    assert holdings.target() == 64
    for _ in range(20):  # the tasks became slow
        holdings.note_run(1, 1.0)
    assert holdings.target() == 4
