"""What only the SQL broker does: many consumers at once, errors, a shared engine."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select

from qengine.brokers import Delivery
from qengine.brokers.sql import SQLBroker
from qengine.config import load_config
from qengine.db import Base, QueueRow, normalize_url
from qengine.errors import BrokerError, BrokerUnavailable
from qengine.runtime import get_broker

from .conftest import SECRET


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
        pytest.param("sqlite"),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/broker.sqlite3"
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_concurrent_consumers_get_each_package_exactly_once(
    database_url: str, cluster_name: str
) -> None:
    total, consumers = 500, 6
    config = load_config(
        {"name": cluster_name, "broker": database_url, "secret_key": SECRET, "bulk": 10}
    )
    producer = get_broker(config)
    producer.enqueue_many([b"%d" % i for i in range(total)])
    received: list[list[Delivery]] = [[] for _ in range(consumers)]
    errors: list[BaseException] = []
    start = threading.Barrier(consumers)

    def consume(mine: list[Delivery]) -> None:
        broker = get_broker(config)  # its own instance, like a cluster of its own
        try:
            start.wait()
            while batch := broker.receive(timeout=0):
                mine.extend(batch)
                broker.acknowledge_many([d.ack_id for d in batch])
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(mine,)) for mine in received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        packages = Counter(d.package for mine in received for d in mine)
        assert packages == Counter(b"%d" % i for i in range(total))
        assert all(d.count == 1 for mine in received for d in mine)
        assert sum(1 for mine in received if mine) > 1  # they did compete
        assert (producer.queue_size(), producer.lock_size()) == (0, 0)
    finally:
        producer.delete_queue()


def test_an_unreachable_database_fails_pings_and_calls_without_the_password(
    cluster_name: str,
) -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:1/test"
    broker = get_broker(load_config({"name": cluster_name, "broker": url, "secret_key": SECRET}))

    assert broker.ping() is False
    for call in (lambda: broker.enqueue(b"x"), lambda: broker.receive(timeout=0)):
        with pytest.raises(BrokerUnavailable) as caught:
            call()
        assert "127.0.0.1:1" in str(caught.value)
        assert "********" in str(caught.value)
        assert "s3cret" not in str(caught.value)


def test_a_receipt_of_another_broker_is_a_broker_error(tmp_path: Any, cluster_name: str) -> None:
    url = f"sqlite:///{tmp_path}/broker.sqlite3"
    broker = get_broker(load_config({"name": cluster_name, "broker": url, "secret_key": SECRET}))

    with pytest.raises(BrokerError, match=cluster_name):
        broker.acknowledge("1712345678901-0")


def test_info_names_the_dialect_and_version(database_url: str, cluster_name: str) -> None:
    config = load_config({"name": cluster_name, "broker": database_url, "secret_key": SECRET})

    name, dialect, version = get_broker(config).info().split(" ")

    assert name == "SQL"
    assert dialect in {"sqlite", "postgresql", "mariadb", "mysql"}
    assert version[0].isdigit()


def test_an_engine_passed_in_is_used(tmp_path: Any, cluster_name: str) -> None:
    engine = create_engine(normalize_url(f"sqlite:///{tmp_path}/own.sqlite3"))
    Base.metadata.create_all(engine)
    config = load_config({"name": cluster_name, "secret_key": SECRET})
    try:
        broker = SQLBroker(config, connection=engine)
        broker.enqueue(b"in my engine")

        with engine.connect() as conn:
            rows = conn.execute(select(QueueRow.payload).where(QueueRow.key == cluster_name))
            assert rows.scalars().all() == [b"in my engine"]
        assert [d.package for d in broker.receive(timeout=0)] == [b"in my engine"]
        with engine.begin() as conn:
            conn.execute(delete(QueueRow))
    finally:
        engine.dispose()


def test_enqueue_in_a_transaction_counts_only_if_it_commits(
    database_url: str, cluster_name: str
) -> None:
    config = load_config({"name": cluster_name, "broker": database_url, "secret_key": SECRET})
    broker = get_broker(config)
    assert isinstance(broker, SQLBroker)
    try:
        with broker.engine.connect() as conn:
            broker.enqueue_in(conn, b"rolled back")
            conn.rollback()
        with broker.engine.begin() as conn:
            broker.enqueue_in(conn, b"committed")

        assert [d.package for d in broker.receive(count=5, timeout=0)] == [b"committed"]
    finally:
        broker.delete_queue()


def test_polling_an_empty_sqlite_queue_takes_no_write_lock(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "idle.sqlite3"
    broker = get_broker(load_config({"broker": f"sqlite:///{path}", "secret_key": SECRET}))
    broker.enqueue(b"first")
    (delivery,) = broker.receive(timeout=0)  # the queue now holds nothing due
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a producer in the middle of its write
    polled = threading.Thread(target=lambda: broker.receive(timeout=0))
    polled.start()
    polled.join(1.0)
    try:
        # A poll that asked for the write lock would wait out the busy timeout (30 s).
        assert not polled.is_alive()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        polled.join()
    broker.acknowledge(delivery.ack_id)
    broker.close()


def test_a_queue_that_just_had_work_is_looked_at_again_sooner_than_poll(tmp_path: Any) -> None:
    # A long poll: an idle queue is looked at once a second at most.
    config = load_config(
        {"broker": f"sqlite:///{tmp_path}/q.sqlite3", "secret_key": SECRET, "poll": 1.0}
    )
    broker, producer = get_broker(config), SQLBroker(config)
    producer.enqueue(b"first")
    (first,) = broker.receive(timeout=0)
    assert broker.receive(timeout=0.05) == []  # looked, found nothing: pauses briefly
    producer.enqueue(b"second")
    # Within 0.3 s, although poll is 1 s: the pause after work starts at FIRST_PAUSE_S.
    (second,) = broker.receive(timeout=0.3)
    assert second.package == b"second"

    broker.acknowledge_many([first.ack_id, second.ack_id])
    for _ in range(12):  # empty looks double the pause up to poll
        broker.receive(timeout=0)
        broker.receive(timeout=0.01)
    producer.enqueue(b"third")
    assert broker.receive(timeout=0.3) == []  # idle again: the next look is poll away
    (third,) = broker.receive(timeout=1.5)
    assert third.package == b"third"
    broker.acknowledge(third.ack_id)
    producer.close()
    broker.close()
