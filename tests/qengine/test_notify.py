"""Result notifications on the real Redis: who wakes, with what, and what is left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest

import qengine
from qengine import fetch, fetch_group, result, result_group
from qengine.notify import PAYLOAD_LIMIT, notify_groups_safely, notify_safely
from qengine.outcomes import finish
from qengine.runtime import get_notifier, get_store
from qengine.signing import Signer
from qengine.store import outcome_values
from tests.qengine.test_store import outcome

pytestmark = pytest.mark.redis


@pytest.fixture
def config(redis_url, cluster_name, redis_client) -> Iterator[qengine.Config]:
    config = qengine.configure(
        broker=redis_url, name=cluster_name, secret_key="notify-test",
        store=qengine.get_config().store,
    )  # fmt: skip
    yield config
    keys = list(redis_client.scan_iter(f"qengine:{cluster_name}:*"))
    if keys:
        redis_client.delete(*keys)


def later(action: Callable[[], None], delay: float = 0.2) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()))
    thread.start()
    return thread


def leftover(redis_client, config) -> list[bytes]:
    return list(redis_client.scan_iter(f"qengine:{config.name}:*"))


def test_the_waiter_takes_the_pushed_row_without_reading_the_store(config, redis_client):
    done = outcome("from the notification")
    row = outcome_values(done)
    # Only pushed, never saved: a waiter that answers proves it used the row.
    thread = later(lambda: get_notifier(config).notify([row["id"]], {row["id"]: row}))
    task = fetch(row["id"], wait=5_000)
    thread.join()
    assert task is not None
    assert task.result == "from the notification"
    assert task.args == (1, 2)
    assert task.kwargs == {"k": "v"}
    assert task.success is True
    assert leftover(redis_client, config) == []  # the script cleared the interest


def test_a_forged_row_is_ignored_and_the_store_answers(config, redis_client):
    done = outcome("saved")
    forged = {**outcome_values(done), "result": b"not even a pickle"}
    notifier = get_notifier(config)
    bad = Signer("another key", f"{config.name}:result").dumps(forged)

    def save_then_forge() -> None:
        get_store(config).save_outcomes([done])
        redis_client.rpush(notifier._done(done.message.id), bad)

    started = time.monotonic()
    thread = later(save_then_forge)
    assert result(done.message.id, wait=5_000) == "saved"
    thread.join()
    assert time.monotonic() - started < 1  # woken by the forgery, answered by the store
    assert leftover(redis_client, config) == []


def test_a_large_result_is_read_from_the_store(config, redis_client):
    big = outcome("x" * (PAYLOAD_LIMIT + 1))
    row = outcome_values(big)
    assert get_notifier(config).payload(row) == b""

    def save_and_notify() -> None:
        rows = get_store(config).save_outcomes([big])
        get_notifier(config).notify([row["id"]], {r["id"]: r for r in rows})

    thread = later(save_and_notify)
    assert len(result(row["id"], wait=5_000)) == PAYLOAD_LIMIT + 1
    thread.join()
    assert leftover(redis_client, config) == []


def test_a_row_over_max_package_size_is_read_from_the_store(
    redis_url, cluster_name, redis_client, caplog
):
    # Under PAYLOAD_LIMIT but over a small max_package_size: the waiter could not verify
    # it, so it is not pushed; the waiter still wakes at once and reads the store.
    config = qengine.configure(
        broker=redis_url, name=cluster_name, secret_key="notify-test",
        store=qengine.get_config().store, max_package_size=2048, compress=False,
    )  # fmt: skip
    try:
        mid = outcome("x" * 4096)
        row = outcome_values(mid)
        assert get_notifier(config).payload(row) == b""

        def save_and_notify() -> None:
            rows = get_store(config).save_outcomes([mid])
            woken.update(get_notifier(config).notify([row["id"]], {r["id"]: r for r in rows}))

        woken: set[str] = set()
        started = time.monotonic()
        thread = later(save_and_notify)
        assert result(row["id"], wait=5_000) == "x" * 4096
        thread.join()
        assert woken == {row["id"]}
        assert time.monotonic() - started < 1  # woken, not found by the next look a second on
        assert "could not notify" not in caplog.text
    finally:
        keys = list(redis_client.scan_iter(f"qengine:{cluster_name}:*"))
        if keys:
            redis_client.delete(*keys)


def test_a_cached_wait_does_not_take_a_stored_row(config):
    done = outcome("stored, not cached")
    row = outcome_values(done)
    thread = later(lambda: get_notifier(config).notify([row["id"]], {row["id"]: row}))
    assert fetch(row["id"], wait=600, cached=True) is None
    thread.join()


def test_an_unanswered_wait_times_out_and_cleans_up(config, redis_client):
    started = time.monotonic()
    assert result("0" * 32, wait=300) is None
    assert 0.25 < time.monotonic() - started < 3
    assert leftover(redis_client, config) == []


def test_nobody_waiting_means_nothing_is_pushed(config, redis_client):
    done = outcome(1)
    get_notifier(config).notify([done.message.id], {done.message.id: outcome_values(done)})
    assert leftover(redis_client, config) == []


def test_in_a_batch_only_the_waited_for_rows_are_pushed(config, redis_client):
    batch = [outcome(i) for i in range(5)]
    rows = {o.message.id: outcome_values(o) for o in batch}
    waited = batch[3].message.id
    thread = later(lambda: get_notifier(config).notify(list(rows), rows))
    assert result(waited, wait=5_000) == 3
    thread.join()
    assert leftover(redis_client, config) == []


# -- around the monitor's write (``finish``) -----------------------------------------


def finish_with_slow_write(config, monkeypatch, done, *, before_write=None, hold=None):
    """Run ``finish`` for ``done`` in a thread, its store write held until ``hold`` is set."""
    store = get_store(config)
    save_rows = store.save_rows

    def slow_save_rows(rows):
        if before_write is not None:
            before_write.set()
        if hold is not None:
            hold.wait(5)
        else:
            time.sleep(0.3)
        save_rows(rows)

    monkeypatch.setattr(store, "save_rows", slow_save_rows)
    notify = partial(notify_safely, get_notifier(config))
    return later(lambda: finish([done], config, store=store, notify=notify), 0.2)


def test_a_waiter_is_told_only_once_the_store_has_committed(config, monkeypatch):
    done = outcome("stored first")
    hold = threading.Event()
    thread = finish_with_slow_write(config, monkeypatch, done, hold=hold)
    try:
        # The write is held: a waiter must not hear of a result nobody could read back.
        assert fetch(done.message.id, wait=700) is None
        assert get_store(config).get(done.message.id) is None
    finally:
        hold.set()
    task = fetch(done.message.id, wait=5_000)
    thread.join()
    assert task is not None
    assert task.result == "stored first"
    assert get_store(config).get(done.message.id).result == "stored first"


def test_every_result_a_waiter_receives_is_already_stored(config):
    # Many round trips, each read back at once from the store the waiter did not read.
    store = get_store(config)
    notify = partial(notify_safely, get_notifier(config))
    for n in range(200):
        done = outcome(n)
        thread = later(lambda d=done: finish([d], config, store=store, notify=notify), 0)
        assert result(done.message.id, wait=5_000) == n
        assert store.get(done.message.id) is not None, f"round trip {n}: told before stored"
        thread.join()


def test_a_waiter_arriving_during_the_write_is_woken_right_after_it(config, monkeypatch):
    done = outcome("late")
    writing = threading.Event()
    thread = finish_with_slow_write(config, monkeypatch, done, before_write=writing)
    assert writing.wait(5)  # the early notification went out to nobody
    started = time.monotonic()
    assert result(done.message.id, wait=5_000) == "late"
    thread.join()
    # The write took 0.3 s; a missed wake-up would sleep out the waiter's 1 s look.
    assert time.monotonic() - started < 0.8


def test_a_row_too_large_to_hand_over_wakes_its_waiter_only_after_the_write(
    config, monkeypatch, redis_client
):
    done = outcome("x" * (PAYLOAD_LIMIT + 1))
    thread = finish_with_slow_write(config, monkeypatch, done)
    started = time.monotonic()
    assert len(result(done.message.id, wait=5_000)) == PAYLOAD_LIMIT + 1
    thread.join()
    # Woken before the write, it would find nothing stored and sleep out its 1 s look.
    assert time.monotonic() - started < 0.9
    assert leftover(redis_client, config) == []


# -- group waits ------------------------------------------------------------------------


def finish_later(config, outcomes, delay=0.3):
    """``finish`` as the monitor calls it, in a thread, after ``delay`` seconds."""
    return later(
        lambda: finish(
            outcomes, config, store=get_store(config),
            notify=partial(notify_safely, get_notifier(config)),
            notify_groups=partial(notify_groups_safely, get_notifier(config)),
        ),
        delay,
    )  # fmt: skip


def test_a_group_wait_wakes_on_the_save_instead_of_polling(config, monkeypatch, redis_client):
    store = get_store(config)
    counted = store.group_count
    looks: list[int] = []

    def counting(*args, **kwargs):
        looks.append(1)
        return counted(*args, **kwargs)

    monkeypatch.setattr(store, "group_count", counting)
    batch = [outcome(i, group="g-wait") for i in range(3)]
    started = time.monotonic()
    thread = finish_later(config, batch)
    assert sorted(result_group("g-wait", count=3, wait=5_000)) == [0, 1, 2]
    thread.join()
    assert time.monotonic() - started < 0.9  # not the waiter's own 1 s look
    assert len(looks) <= 3  # a poll would have counted every few milliseconds
    assert leftover(redis_client, config) == []


def test_every_waiter_of_a_group_wakes(config, redis_client):
    answers: list[int] = []

    def waiter() -> None:
        answers.append(len(fetch_group("g-many", count=1, wait=5_000)))

    waiters = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in waiters:
        thread.start()
    time.sleep(0.2)  # all three are blocked by now
    started = time.monotonic()
    finish_later(config, [outcome("one", group="g-many")], delay=0).join()
    for thread in waiters:
        thread.join()
    assert answers == [1, 1, 1]
    assert time.monotonic() - started < 0.9
    assert leftover(redis_client, config) == []


def test_an_iter_waiter_wakes_when_the_parts_are_collated(config, redis_client):
    iter_id = "i" * 32
    parts = [outcome(n, group=iter_id) for n in range(2)]
    for n, part in enumerate(parts):
        part.message.cached = True
        part.message.iter_count = 2
        part.message.iter_cached = True
        part.message.iter_index = n
    started = time.monotonic()
    thread = finish_later(config, parts)
    assert result(iter_id, wait=5_000, cached=True) == [0, 1]
    thread.join()
    assert time.monotonic() - started < 0.9
    get_store(config).delete_cached(iter_id)


def _connected_ids(redis_client) -> set[int]:
    return {int(entry["id"]) for entry in redis_client.client_list()}


def test_a_replaced_configuration_disconnects_its_notifier(config, redis_client):
    notifier = get_notifier(config)
    lane_id = notifier.lane("CLIENT", "ID")  # one of the lane's own connections, kept
    pool_id = notifier.client.client_id()  # one of the client's pool
    assert {lane_id, pool_id} <= _connected_ids(redis_client)
    qengine.configure(
        broker=config.broker, name=config.name, secret_key="notify-test", store=config.store
    )
    for _ in range(100):  # the server drops a closed socket's client a moment later
        if not {lane_id, pool_id} & _connected_ids(redis_client):
            break
        time.sleep(0.01)
    assert not {lane_id, pool_id} & _connected_ids(redis_client)


def test_a_replaced_configuration_disconnects_its_cache_and_status_store(config, redis_client):
    from qengine.runtime import get_cache, get_stats

    cache, stats = get_cache(config), get_stats(config)
    ids = {cache.client.client_id(), stats.client.client_id()}  # the broker's Redis, each
    assert ids <= _connected_ids(redis_client)
    qengine.configure(
        broker=config.broker, name=config.name, secret_key="notify-test", store=config.store
    )
    for _ in range(100):
        if not ids & _connected_ids(redis_client):
            break
        time.sleep(0.01)
    assert not ids & _connected_ids(redis_client)
