"""The guard in this process, on a fake pool and broker: what it runs again, and when."""

from __future__ import annotations

import queue
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import pytest

import qengine
from qengine.brokers.base import Delivery
from qengine.cluster.guard import Guard
from qengine.cluster.pool import SlotView, TaskModules
from qengine.cluster.state import Counters, Held, Holdings
from qengine.cluster.workers import Workers
from qengine.task import TaskMessage, new_id


class FakePool:
    """Just what the guard and ``Workers`` use; every hand-off stays pending."""

    def __init__(self) -> None:
        self.executor = SimpleNamespace(_broken=False)
        self.processes: dict[int, object] = {}
        self.workers = 2
        self.broken = False
        self.is_shut_down = False
        self.handed: list[int] = []
        self.futures: dict[int, Future] = {}
        self.started: dict[int, float] = {}
        """When a task started, by seq (default: now)."""
        self.killed: list[int] = []
        self.worker_pids: list[int] = []
        self.spawned: list[int] = []
        """Workers the executor started since the last refresh()."""
        self.retired = False
        self.task_modules = TaskModules()

    def submit(self, batch):
        future: Future = Future()
        for seq, _package, _timeout_s in batch:
            self.handed.append(seq)
            self.futures[seq] = future
        return future

    def running(self):
        # Every hand-off still pending is running, on a worker with a made-up pid.
        return [
            SlotView(1000 + seq, seq, self.started.get(seq, time.time()))
            for seq, future in self.futures.items()
            if not future.done()
        ]

    def crashed_pids(self):
        return set()  # exit codes unknown: the guard then blames every task running

    def shutdown(self, *, wait):
        self.is_shut_down = True

    def start(self):
        pass

    def refresh(self):
        new, self.spawned = self.spawned, []
        self.worker_pids.extend(new)
        return new

    @property
    def pids(self):
        return list(self.worker_pids)

    def kill(self, pid):
        self.killed.append(pid)


class FakeBroker:
    """Just what the guard uses of a broker: lease renewal."""

    def __init__(self) -> None:
        self.extended: list[list[str]] = []

    def extend(self, ack_ids):
        self.extended.append(list(ack_ids))


class GuardBench:
    """A guard with its parts: real holdings, workers and counters, a fake pool and broker."""

    def __init__(self, config, *, make_pool=FakePool) -> None:
        self.holdings = Holdings(8)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.workers = Workers(make_pool, self.results, "test")
        self.workers.renew()
        self.counters = Counters()
        self.broker = FakeBroker()
        self.given_up: list[tuple[Held, str, bool]] = []
        self.thread_checks = 0
        self.published = 0
        self.guard = Guard(
            config=config, broker=self.broker, holdings=self.holdings, workers=self.workers,
            counters=self.counters, give_up=self.give_up, check_threads=self.check_threads,
            publish=self.publish, label="test",
        )  # fmt: skip

    @property
    def pool(self):
        return self.workers.pool

    def give_up(self, held, reason, *, timed_out=False, acknowledge=True):
        self.given_up.append((held, reason, timed_out))

    def check_threads(self):
        self.thread_checks += 1

    def publish(self):
        self.published += 1

    def dispatch(self, items):
        self.workers.dispatch(items)


@pytest.fixture
def cluster(embedded) -> GuardBench:
    return GuardBench(qengine.get_config())


def held(cluster: GuardBench) -> Held:
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
    cluster.workers.report_broken([task.seq])  # ... the monitor reports the old hand-off later
    cluster.guard.replace_broken_pool()
    assert cluster.pool is second
    assert not second.is_shut_down
    assert second.handed == [task.seq]  # not run a third time
    assert task.deaths == 0  # nor blamed for a death that did not happen
    assert cluster.counters.reincarnations == 1


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


# -- one round, check by check ---------------------------------------------------------------


def test_a_tick_checks_threads_every_round_and_publishes_once_a_second(cluster):
    cluster.guard.tick(100.0)
    cluster.guard.tick(100.5)
    cluster.guard.tick(101.0)
    assert cluster.thread_checks == 3
    assert cluster.published == 2


def test_a_tick_renews_the_leases_of_held_tasks_four_times_per_retry(embedded):
    bench = GuardBench(qengine.configure(embedded, retry=8, guard_cycle=0.2))
    task = held(bench)
    start = bench.guard.last_extend
    bench.guard.tick(start + 1.0)
    assert bench.broker.extended == []
    bench.guard.tick(start + 2.0)  # retry / 4
    assert bench.broker.extended == [[task.delivery.ack_id]]


def test_a_task_past_its_timeout_and_grace_has_its_worker_killed(cluster):
    task = held(cluster)
    task.timeout_s = 2  # decided by the pusher (``task_timeout``)
    cluster.dispatch([task])
    cluster.pool.started[task.seq] = time.time() - 2.5  # within the grace (1 s for 2 s)
    cluster.guard.tick(time.monotonic())
    assert cluster.pool.killed == []
    cluster.pool.started[task.seq] = time.time() - 3.5
    cluster.guard.tick(time.monotonic())
    assert cluster.pool.killed == [1000 + task.seq]
    assert task.timed_out
    cluster.guard.tick(time.monotonic())
    assert cluster.pool.killed == [1000 + task.seq], "killed once"


def test_a_timed_out_task_in_a_pool_that_broke_is_failed_with_its_timeout(cluster):
    task = held(cluster)
    task.timeout_s = 2
    cluster.dispatch([task])
    cluster.pool.started[task.seq] = time.time() - 10
    cluster.guard.enforce_timeouts()
    cluster.pool.executor._broken = True  # the kill broke the pool
    cluster.guard.replace_broken_pool()
    [(given_up, reason, timed_out)] = cluster.given_up
    assert given_up is task
    assert timed_out
    assert "timed out after 2 seconds" in reason
    assert cluster.pool.handed == []  # not run again


def test_a_pool_whose_worker_passed_max_rss_is_retired_for_a_new_one(embedded):
    bench = GuardBench(qengine.configure(embedded, max_rss=50_000))
    first = bench.pool
    first.worker_pids = [7, 8]
    bench.workers.note_worker(7, 40_000)
    bench.guard.tick(time.monotonic())
    assert bench.pool is first
    bench.workers.note_worker(8, 60_000)
    bench.guard.tick(time.monotonic())
    assert bench.pool is not first
    assert first.retired
    assert bench.counters.reincarnations == 1


def test_workers_recycled_by_the_executor_are_announced_and_counted(cluster):
    cluster.pool.spawned = [21, 22]
    cluster.guard.tick(time.monotonic())
    assert cluster.counters.reincarnations == 2
    assert {21, 22} <= cluster.workers.announced
    cluster.guard.tick(time.monotonic())
    assert cluster.counters.reincarnations == 2


def test_a_task_whose_worker_died_too_often_is_given_up(embedded):
    bench = GuardBench(qengine.configure(embedded, max_attempts=2))
    task = held(bench)
    task.message.attempt_count = 2
    bench.dispatch([task])
    bench.pool.executor._broken = True  # its worker died while the task was running
    bench.guard.tick(time.monotonic())
    [(given_up, reason, timed_out)] = bench.given_up
    assert given_up is task
    assert "died while running this task" in reason
    assert not timed_out
    assert task.deaths == 1
    assert bench.pool.handed == []  # not run again
