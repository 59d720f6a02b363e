"""A group is listed in enqueue order (``GROUP_ORDER``), whatever order its tasks finished in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qengine.store import dumps
from qengine.task import GROUP_ORDER, Outcome, TaskMessage

BASE = datetime(2026, 1, 1, 12, tzinfo=UTC)

# (id, enqueued, finished, success): "b" and "c" were enqueued at the same instant (the id
# decides), and the tasks finished in nearly the opposite order.
GROUP = [
    ("a0", 0, 9, True),
    ("c0", 1, 2, True),
    ("b0", 1, 7, False),
    ("d0", 2, 1, True),
]
ENQUEUE_ORDER = ["a0", "b0", "c0", "d0"]


def finished(task_id: str, enqueued_s: int, stopped_s: int, success: bool) -> Outcome:
    message = TaskMessage(
        id=task_id, name=f"name-{task_id}", func="tests.tasks.add", group="g",
        enqueued=BASE + timedelta(seconds=enqueued_s),
    )  # fmt: skip
    stopped = BASE + timedelta(seconds=stopped_s)
    return Outcome(message=message, success=success, result_blob=dumps(task_id),
                   started=stopped, stopped=stopped)  # fmt: skip


def test_group_order_is_enqueue_time_then_id():
    assert GROUP_ORDER == ("started", "id")


def test_a_group_is_listed_in_enqueue_order_not_finish_order(store):
    # Saved as a monitor would: in the order the tasks finished.
    for row in sorted(GROUP, key=lambda row: row[2]):
        store.save_outcomes([finished(*row)])

    assert [task.id for task in store.group_tasks("g")] == ENQUEUE_ORDER
    assert store.group_results("g", failures=True) == ENQUEUE_ORDER
    successes = [task_id for task_id in ENQUEUE_ORDER if task_id != "b0"]
    assert [task.id for task in store.group_tasks("g", failures=False)] == successes
    assert store.group_results("g") == successes


def test_a_cached_group_is_listed_in_the_same_order(store):
    # cached=True reads the group from the cache instead: the order must not change.
    for row in sorted(GROUP, key=lambda row: row[2]):
        store.save_outcomes([finished(*row)])
        store.cache_task(store.get(row[0]), timeout=60)
    try:
        assert [task.id for task in store.cached_group("g")] == ENQUEUE_ORDER
        successes = [task_id for task_id in ENQUEUE_ORDER if task_id != "b0"]
        assert [task.id for task in store.cached_group("g", failures=False)] == successes
    finally:
        store.delete_cached_group("g", tasks=True)
