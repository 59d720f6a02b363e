"""The guard's pool replacement in this process, on a fake pool: what it runs again, and when."""

from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import pytest

import qengine
from qengine.brokers.base import Delivery
from qengine.cluster.cluster import Cluster
from qengine.cluster.pool import SlotView
from qengine.cluster.state import Held
from qengine.task import TaskMessage, new_id


class FakePool:
    """Just what the guard and ``Cluster.dispatch`` use; every hand-off stays pending."""

    def __init__(self) -> None:
        self.executor = SimpleNamespace(_broken=False)
        self.processes: dict[int, object] = {}
        self.workers = 2
        self.broken = False
        self.is_shut_down = False
        self.handed: list[int] = []
        self.futures: dict[int, Future] = {}

    def submit(self, batch):
        future: Future = Future()
        for seq, _package in batch:
            self.handed.append(seq)
            self.futures[seq] = future
        return future

    def running(self):
        # Every hand-off still pending is running, on a worker with a made-up pid.
        return [
            SlotView(1000 + seq, seq, time.time())
            for seq, future in self.futures.items()
            if not future.done()
        ]

    def crashed_pids(self):
        return set()  # exit codes unknown: the guard then blames every task running

    def shutdown(self, *, wait):
        self.is_shut_down = True


@pytest.fixture
def cluster(embedded, monkeypatch) -> Cluster:
    cluster = Cluster(qengine.get_config())
    cluster._pool = FakePool()

    def new_pool():
        cluster._pool = FakePool()
        return cluster._pool

    monkeypatch.setattr(cluster, "new_pool", new_pool)
    return cluster


def held(cluster: Cluster) -> Held:
    message = TaskMessage(id=new_id()[0], name="held", func="tests.tasks.add", args=(1, 2))
    seq = cluster.holdings.next_seq()
    task = Held(seq=seq, delivery=Delivery(str(seq), b"package"), message=message)
    cluster.holdings.add([task])
    return task


def break_pool(pool: FakePool, *tasks: Held) -> None:
    for task in tasks:
        assert task.future is not None
        task.future.set_exception(BrokenProcessPool("a worker died"))
    pool.executor._broken = True


def test_a_hand_off_that_returned_is_not_run_again_when_its_pool_breaks(cluster):
    first = cluster.pool
    returned, lost = held(cluster), held(cluster)
    cluster.dispatch([returned, lost])
    # Its outcome is on its way to the monitor, which may be slow (a store outage).
    returned.future.set_result([])
    break_pool(first, lost)
    cluster.guard.replace_broken_pool()
    assert cluster.pool is not first
    assert cluster.pool.handed == [lost.seq]


def test_a_late_report_of_a_replaced_pool_leaves_the_new_pool_alone(cluster):
    first = cluster.pool
    task = held(cluster)
    cluster.dispatch([task])
    break_pool(first, task)
    cluster.guard.replace_broken_pool()  # the guard saw the broken pool first ...
    second = cluster.pool
    assert second.handed == [task.seq]
    cluster.guard.report_broken([task.seq])  # ... the monitor reports the old hand-off later
    cluster.guard.replace_broken_pool()
    assert cluster.pool is second
    assert not second.is_shut_down
    assert second.handed == [task.seq]  # not run a third time
    assert task.deaths == 0  # nor blamed for a death that did not happen
    assert cluster.reincarnations == 1


def test_a_hand_off_the_pool_refused_is_run_in_a_new_pool(cluster):
    first = cluster.pool

    def refuse(batch):
        raise RuntimeError("cannot schedule new futures after shutdown")

    first.submit = refuse
    task = held(cluster)
    cluster.dispatch([task])
    cluster.guard.replace_broken_pool()
    assert cluster.pool is not first
    assert cluster.pool.handed == [task.seq]
