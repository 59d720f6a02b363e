"""The broker contract, proved once for every broker (see conftest.BROKERS)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

from qengine.brokers import Delivery

from .conftest import MakeBroker

RETRY_S = 0.5
"""Lease of the tests that watch leases run out: long enough to act within, short to wait for."""


def drain(broker, *, count: int = 100) -> list[Delivery]:
    """Everything the broker delivers now, without waiting for more."""
    out: list[Delivery] = []
    while batch := broker.receive(count=count, timeout=0):
        out.extend(batch)
    return out


def test_packages_come_out_in_the_order_they_went_in(make_broker: MakeBroker) -> None:
    broker = make_broker()
    first = broker.enqueue(b"p0")
    rest = broker.enqueue_many([b"p1", b"p2", b"p3"])
    broker.enqueue(b"p4")

    delivered = drain(broker)

    assert isinstance(first, str)
    assert all(isinstance(ack_id, str) for ack_id in rest)
    assert [d.package for d in delivered] == [b"p0", b"p1", b"p2", b"p3", b"p4"]
    assert [d.ack_id for d in delivered[:4]] == [first, *rest]
    assert all(d.count == 1 for d in delivered)


def test_receive_takes_at_most_bulk_packages(make_broker: MakeBroker) -> None:
    broker = make_broker(bulk=3)
    broker.enqueue_many([b"%d" % i for i in range(7)])

    sizes = [len(broker.receive(timeout=0)) for _ in range(4)]

    assert sizes == [3, 3, 1, 0]
    assert len(broker.receive(count=5, timeout=0)) == 0


def test_empty_queue_returns_nothing_after_the_timeout(make_broker: MakeBroker) -> None:
    broker = make_broker()

    assert broker.receive(timeout=0) == []
    assert broker.receive(timeout=0.05) == []


def test_a_blocked_receive_gets_a_package_enqueued_meanwhile(make_broker: MakeBroker) -> None:
    consumer, producer = make_broker(), make_broker()
    consumer.receive(timeout=0)  # the Redis group exists before the package arrives
    timer = threading.Timer(0.1, producer.enqueue, [b"late"])
    timer.start()
    try:
        got = consumer.receive(timeout=3)
    finally:
        timer.join()

    assert [d.package for d in got] == [b"late"]


def test_acknowledged_failed_and_deleted_packages_are_gone_for_good(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(retry=RETRY_S)
    ids = broker.enqueue_many([b"a", b"b", b"c", b"unwanted", b"bad", b"dropped"])

    broker.delete(ids[3])  # never delivered
    a, b, c, bad, dropped = broker.receive(count=6, timeout=0)
    broker.acknowledge(a.ack_id)
    broker.acknowledge_many([b.ack_id, c.ack_id])
    broker.fail(bad.ack_id)
    broker.delete(dropped.ack_id)
    time.sleep(RETRY_S + 0.2)  # long enough for any surviving lease to run out

    assert [d.package for d in (a, b, c, bad, dropped)] == [b"a", b"b", b"c", b"bad", b"dropped"]
    assert broker.receive(count=6, timeout=0) == []
    assert (broker.queue_size(), broker.lock_size()) == (0, 0)


def test_an_unacknowledged_package_is_delivered_again_after_retry(make_broker: MakeBroker) -> None:
    # Two instances on one queue stand for two clusters; the first one "dies" holding work.
    dead, alive = make_broker(retry=RETRY_S), make_broker(retry=RETRY_S)
    dead.enqueue_many([b"done", b"lost"])
    done, _lost = dead.receive(count=2, timeout=0)
    dead.acknowledge(done.ack_id)

    assert alive.receive(count=2, timeout=0) == []  # the lease holds
    time.sleep(RETRY_S + 0.2)
    again = alive.receive(count=2, timeout=1)

    assert [(d.package, d.count) for d in again] == [(b"lost", 2)]
    time.sleep(RETRY_S + 0.2)
    third = dead.receive(count=2, timeout=1)
    assert [(d.package, d.count) for d in third] == [(b"lost", 3)]
    dead.acknowledge(third[0].ack_id)
    assert (alive.queue_size(), alive.lock_size()) == (0, 0)


def test_extend_keeps_a_lease_alive_past_retry(make_broker: MakeBroker) -> None:
    holder, other = make_broker(retry=RETRY_S), make_broker(retry=RETRY_S)
    holder.enqueue(b"long task")
    (held,) = holder.receive(timeout=0)

    ends = time.monotonic() + 2 * RETRY_S
    while time.monotonic() < ends:
        holder.extend([held.ack_id])
        assert other.receive(timeout=0.1) == []
    assert holder.lock_size() == 1

    # Heartbeat stops (the cluster died): the package goes to the other consumer.
    time.sleep(RETRY_S + 0.2)
    again = other.receive(timeout=1)
    assert [(d.package, d.count) for d in again] == [(b"long task", 2)]


def test_purge_empties_the_queue_and_it_stays_usable(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.enqueue_many([b"a", b"b", b"c"])
    broker.receive(timeout=0)

    broker.purge_queue()

    assert (broker.queue_size(), broker.lock_size()) == (0, 0)
    assert broker.receive(timeout=0) == []
    broker.enqueue(b"after")
    assert [d.package for d in broker.receive(timeout=1)] == [b"after"]


def test_delete_queue_removes_it_and_any_instance_can_start_again(
    make_broker: MakeBroker,
) -> None:
    first, second = make_broker(), make_broker()
    first.enqueue_many([b"a", b"b"])
    second.receive(timeout=0)

    first.delete_queue()

    assert (first.queue_size(), first.lock_size()) == (0, 0)
    first.enqueue(b"new")
    # ``second`` had seen the old queue; it must find the new one all the same.
    assert [d.package for d in second.receive(timeout=1)] == [b"new"]


def test_queue_size_counts_waiting_and_lock_size_leased(make_broker: MakeBroker) -> None:
    broker = make_broker()
    assert (broker.queue_size(), broker.lock_size()) == (0, 0)
    broker.enqueue_many([b"a", b"b", b"c", b"d"])
    assert (broker.queue_size(), broker.lock_size()) == (4, 0)

    a, _b, _c = broker.receive(count=3, timeout=0)
    assert (broker.queue_size(), broker.lock_size()) == (1, 3)

    broker.acknowledge(a.ack_id)
    assert (broker.queue_size(), broker.lock_size()) == (1, 2)


def test_two_queue_names_do_not_see_each_other(make_broker: MakeBroker, cluster_name: str) -> None:
    mine, theirs = make_broker(), make_broker(name=f"{cluster_name}-other")
    mine.enqueue_many([b"mine-1", b"mine-2"])
    theirs.enqueue(b"theirs")

    assert [d.package for d in theirs.receive(count=5, timeout=0)] == [b"theirs"]
    theirs.purge_queue()
    theirs.delete_queue()

    assert (mine.queue_size(), mine.lock_size()) == (2, 0)
    assert [d.package for d in mine.receive(count=5, timeout=0)] == [b"mine-1", b"mine-2"]


def test_megabyte_packages_arrive_intact(make_broker: MakeBroker) -> None:
    broker = make_broker()
    # A megabyte, or as much as a broker with a smaller limit of its own carries (SQS).
    size = min(1024 * 1024, broker.package_limit_bytes or 1024 * 1024)
    packages = [os.urandom(size) for _ in range(3)]
    broker.enqueue(packages[0])
    broker.enqueue_many(packages[1:])

    delivered = drain(broker, count=2)

    assert [d.package for d in delivered] == packages


def remote(broker_keys: dict[str, Any]) -> bool:
    """SQS and MongoDB run on stand-in servers here that take ~10 ms a call: tests that
    only need volume to show a race use less of it there, to keep the suite short."""
    return "sqs" in broker_keys or "mongo" in broker_keys


def test_concurrent_producers_lose_and_duplicate_nothing(
    make_broker: MakeBroker, broker_keys: dict[str, Any]
) -> None:
    producers, per_producer = (4, 20) if remote(broker_keys) else (8, 40)
    consumer = make_broker()
    errors: list[BaseException] = []

    def produce(n: int) -> None:
        try:
            broker = make_broker()
            half = per_producer // 2
            for i in range(half):
                broker.enqueue(b"%d-%d" % (n, i))
            broker.enqueue_many([b"%d-%d" % (n, i) for i in range(half, per_producer)])
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered = drain(consumer, count=50)
    consumer.acknowledge_many([d.ack_id for d in delivered])

    assert errors == []
    expected = Counter(b"%d-%d" % (n, i) for n in range(producers) for i in range(per_producer))
    assert Counter(d.package for d in delivered) == expected
    # Each producer's packages keep their order.
    for n in range(producers):
        mine = [d.package for d in delivered if d.package.startswith(b"%d-" % n)]
        assert mine == [b"%d-%d" % (n, i) for i in range(per_producer)]
    assert (consumer.queue_size(), consumer.lock_size()) == (0, 0)


def test_dequeue_is_the_spec_form_of_receive(make_broker: MakeBroker) -> None:
    broker = make_broker(bulk=2)
    broker.enqueue_many([b"a", b"b", b"c"])

    got = broker.dequeue()

    assert [package for _ack_id, package in got] == [b"a", b"b"]
    assert all(isinstance(item, tuple) and isinstance(item[0], str) for item in got)
    for ack_id, _package in got:
        broker.acknowledge(ack_id)
    assert (broker.queue_size(), broker.lock_size()) == (1, 0)


def test_ping_and_info_describe_a_reachable_broker(make_broker: MakeBroker) -> None:
    broker = make_broker()

    assert broker.ping() is True
    assert isinstance(broker.info(), str)
    assert broker.info()


def test_concurrent_consumers_share_the_work_without_duplicates(
    make_broker: MakeBroker, broker_keys: dict[str, Any]
) -> None:
    total, consumers = (80 if remote(broker_keys) else 200), 4
    make_broker().enqueue_many([b"%d" % i for i in range(total)])
    brokers = [make_broker(bulk=5) for _ in range(consumers)]
    received: list[list[Delivery]] = [[] for _ in brokers]
    errors: list[BaseException] = []
    start = threading.Barrier(consumers)

    def consume(broker, mine: list[Delivery]) -> None:
        try:
            start.wait()
            while batch := broker.receive(timeout=0):
                mine.extend(batch)
                broker.acknowledge_many([d.ack_id for d in batch])
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [
        threading.Thread(target=consume, args=pair) for pair in zip(brokers, received, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    packages = Counter(d.package for mine in received for d in mine)
    assert packages == Counter(b"%d" % i for i in range(total))
    assert (brokers[0].queue_size(), brokers[0].lock_size()) == (0, 0)
