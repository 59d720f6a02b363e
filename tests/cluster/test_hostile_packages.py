"""Hostile packages at a cluster: refused unopened, logged once, counted; the cluster goes on.

The pusher tests drive the pusher in this process (its pool replaced by a
list); the cluster tests push packages straight onto the broker of a real
``qcluster`` and read the counters where users read them: ``Stat`` and qinfo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import qengine
from qengine import async_task, result
from qengine.api import submit
from qengine.brokers import make_broker
from qengine.cluster.cluster import Cluster
from qengine.cluster.pusher import Pusher
from qengine.cluster.state import Held
from qengine.config import Config
from qengine.runtime import get_broker, get_signer, get_store
from qengine.signing import Signer
from qengine.status import Stat, summary
from qengine.task import TaskMessage, new_id
from tests.cluster.test_cluster import wait_until
from tests.qengine.test_hostile_packages import hostile_packages

MAX_SIZE = 64 * 1024


def task_message(a: int = 1, b: int = 2) -> TaskMessage:
    return TaskMessage(id=new_id()[0], name="good", func="tests.tasks.add", args=(a, b))


class PusherBench:
    """A cluster's pusher in this process, its real broker and store; the pool is a list."""

    def __init__(self, config: Config) -> None:
        self.cluster = cluster = Cluster(config)
        cluster.signer = get_signer(config)
        cluster.broker = make_broker(config)
        cluster.store = get_store(config)
        self.dispatched: list[Held] = []
        self.pusher = Pusher(
            config=config, broker=cluster.broker, signer=cluster.signer, store=cluster.store,
            holdings=cluster.holdings, counters=cluster.counters, dispatch=self.dispatched.extend,
            give_up=cluster.give_up, stop_event=cluster.stop_event, label=cluster.label,
        )  # fmt: skip

    def take_all(self) -> None:
        """Tick until the broker has nothing more to hand out."""
        while self.pusher.tick():
            pass

    def close(self) -> None:
        self.cluster.broker.close()


@pytest.fixture
def bench_for() -> Iterator:
    made: list[PusherBench] = []

    def make(config: Config) -> PusherBench:
        made.append(PusherBench(config))
        return made[-1]

    yield make
    for bench in made:
        bench.close()


# -- the pusher ----------------------------------------------------------------------------


def test_pusher_drops_counts_and_logs_each_hostile_package_once(
    embedded, bench_for, tmp_path, caplog
):
    config = qengine.configure(embedded, max_package_size=MAX_SIZE, bulk=20)
    canary = tmp_path / "unpickled.canary"
    hostile = hostile_packages(
        canary, secret=config.secret_key, name=config.name, max_size=MAX_SIZE
    )
    bench = bench_for(config)
    broker = bench.cluster.broker
    for package, _ in hostile.values():
        broker.enqueue(package)
    not_a_task = get_signer(config).dumps("verified, but not a task")
    broker.enqueue(not_a_task)
    good = task_message()
    broker.enqueue(get_signer(config).dumps(good))

    with caplog.at_level(logging.ERROR, logger="qengine.cluster.pusher"):
        bench.take_all()

    assert not canary.exists()
    assert [held.message.id for held in bench.dispatched] == [good.id]
    assert bench.cluster.rejected == len(hostile) + 1
    assert bench.cluster.stat().rejected == len(hostile) + 1
    rejections = [r.getMessage() for r in caplog.records if "rejected package" in r.getMessage()]
    assert len(rejections) == len(hostile) + 1, "each package logged once"
    for _, reason in hostile.values():
        assert any(reason in line for line in rejections), reason
    assert any("holds a str, not a TaskMessage" in line for line in rejections)
    # Dropped from the broker: only the good task is still leased, nothing waits.
    assert broker.queue_size() == 0
    assert broker.lock_size() == 1


def test_pusher_counts_tasks_delivered_again(embedded, bench_for):
    config = qengine.configure(embedded, retry=1)
    bench = bench_for(config)
    broker = bench.cluster.broker
    broker.enqueue(get_signer(config).dumps(task_message()))
    assert [d.count for d in broker.receive(timeout=1)] == [1]  # leased, never acknowledged
    wait_until(bench.pusher.tick, timeout=10, interval=0.1)
    assert [held.delivery.count for held in bench.dispatched] == [2]
    broker.enqueue(get_signer(config).dumps(task_message()))
    bench.take_all()
    assert len(bench.dispatched) == 2
    assert bench.cluster.redeliveries == 1
    assert bench.cluster.stat().redeliveries == 1


def test_old_key_passes_the_pusher_while_a_fallback_and_is_rejected_once_removed(
    embedded, bench_for
):
    old_package = Signer("old-key", embedded.name).dumps(task_message())
    rotating = bench_for(embedded.replace(secret_key="new-key", secret_key_fallbacks=["old-key"]))
    rotating.cluster.broker.enqueue(old_package)
    rotating.take_all()
    assert len(rotating.dispatched) == 1
    assert rotating.cluster.rejected == 0

    rotated = bench_for(embedded.replace(secret_key="new-key", name=f"{embedded.name}-2"))
    rotated.cluster.broker.enqueue(
        Signer("old-key", rotated.cluster.config.name).dumps(task_message())
    )
    rotated.take_all()
    assert rotated.dispatched == []
    assert rotated.cluster.rejected == 1


# -- real clusters -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def broker_config(request, embedded, cluster_name) -> Iterator[Config]:
    """The embedded SQLite broker, or Redis (with the store still in SQLite)."""
    if request.param == "sqlite":
        yield embedded
        return
    config = qengine.configure(
        embedded, broker=request.getfixturevalue("redis_url"), name=cluster_name
    )
    yield config
    get_broker().delete_queue()


def cluster_stat(config: Config, pid: int) -> Stat | None:
    return next((s for s in Stat.get_all(config) if s.pid == pid), None)


@pytest.mark.cluster
def test_cluster_rejects_hostile_packages_counts_them_and_keeps_working(
    broker_config, start_cluster, tmp_path
):
    config = qengine.configure(broker_config, max_package_size=MAX_SIZE)
    cluster = start_cluster()
    canary = tmp_path / "unpickled.canary"
    hostile = hostile_packages(
        canary, secret=config.secret_key, name=config.name, max_size=MAX_SIZE
    )
    broker = get_broker()
    for package, _ in hostile.values():
        broker.enqueue(package)
    good = async_task("tests.tasks.add", 2, 3)

    assert result(good, wait=20_000) == 5
    stat = wait_until(
        lambda: (s := cluster_stat(config, cluster.pid)) and s.rejected == len(hostile) and s
    )
    assert stat.status in {"Idle", "Working"}
    assert not canary.exists()
    assert summary(config).rejected == len(hostile)
    assert f"Rejected   {len(hostile)}" in "\n".join(summary(config).lines())
    # Still working after the rejects, with a second task.
    assert result(async_task("tests.tasks.add", 4, 4), wait=20_000) == 8
    assert cluster.stop() == 0
    log = cluster.log()
    assert log.count("rejected package") == len(hostile), "each package logged once"
    for kind, (_, reason) in hostile.items():
        assert reason in log, kind
    assert broker.queue_size() == 0
    assert not canary.exists()


@pytest.mark.cluster
def test_key_rotation_under_load_loses_nothing(broker_config, start_cluster):
    # Clients still sign with the old key; the cluster already signs with the new one.
    old_clients = qengine.configure(broker_config, secret_key="old-key")
    cluster = start_cluster(secret_key="new-key", secret_key_fallbacks=["old-key"])
    new_clients = old_clients.replace(secret_key="new-key")
    brokers = {id(config): make_broker(config) for config in (old_clients, new_clients)}
    ids = []
    try:
        for i in range(150):  # enqueued while the cluster runs them, the keys interleaved
            config = new_clients if i % 3 == 0 else old_clients
            options = {"broker": brokers[id(config)]}
            ids.append(submit("tests.tasks.add", (i, 1), {}, options, config))
    finally:
        for broker in brokers.values():
            broker.close()
    assert [result(task_id, wait=30_000) for task_id in ids] == [i + 1 for i in range(150)]
    stat = wait_until(lambda: cluster_stat(old_clients, cluster.pid))
    assert stat.rejected == 0
    assert cluster.stop() == 0

    # The rotation is over: the old key is no longer a fallback, and its packages are refused.
    qengine.configure(new_clients)
    cluster = start_cluster()
    get_broker().enqueue(get_signer(old_clients).dumps(task_message(1, 1)))
    assert result(async_task("tests.tasks.add", 2, 2), wait=20_000) == 4
    wait_until(
        lambda: (s := cluster_stat(new_clients, cluster.pid)) is not None and s.rejected == 1
    )
    assert cluster.stop() == 0
