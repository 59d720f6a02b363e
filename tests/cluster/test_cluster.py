"""A real cluster (``qcluster`` in a subprocess) on the embedded SQLite default and on Redis."""

from __future__ import annotations

import os
import signal
import time

import pytest

import qengine
from qengine import async_task, fetch, result
from qengine.runtime import get_broker
from qengine.status import Stat

pytestmark = pytest.mark.cluster


def wait_until(probe, timeout: float = 20, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def test_cluster_runs_queued_tasks_and_stops_cleanly(embedded, start_cluster):
    ids = [async_task("math.floor", i + 0.5) for i in range(20)]
    chain = qengine.Chain()
    chain.append("math.copysign", 1, -1)
    chain.append("math.floor", 2.5)
    chain.run()
    iter_id = qengine.async_iter("math.floor", [1.5, 2.5])
    hooked = async_task("tests.tasks.add", 1, 2, hook="tests.tasks.record_hook")
    cluster = start_cluster()
    assert [result(i, wait=10_000) for i in ids] == list(range(20))
    assert chain.result(wait=10_000) == [-1.0, 2]
    assert result(iter_id, wait=10_000) == [1, 2]
    assert result(hooked, wait=10_000) == 3
    stats = wait_until(lambda: Stat.get_all(embedded))
    assert stats[0].status in {"Idle", "Working"}
    assert len(stats[0].workers) == 2
    assert cluster.stop() == 0
    log = cluster.log()
    for line in ("starting.", "worker ready for work at", "pushing tasks at", "monitoring at",
                 "running.", "stopping.", "has stopped."):  # fmt: skip
        assert line in log
    assert Stat.get_all(embedded) == []


def test_run_once_processes_the_queue_then_exits(embedded, start_cluster):
    ids = [async_task("math.floor", 1.5) for _ in range(5)]
    cluster = start_cluster("--run-once", wait=False)
    assert cluster.process.wait(60) == 0
    assert all(fetch(i).result == 1 for i in ids)


def test_recycle_replaces_workers_after_that_many_tasks(embedded, start_cluster):
    start_cluster(workers=1, recycle=3)
    pids = [result(async_task("tests.tasks.pid"), wait=10_000) for _ in range(7)]
    assert len(set(pids)) >= 3
    assert max(pids.count(p) for p in set(pids)) <= 3


def test_max_rss_retires_a_worker_that_grew_too_big(embedded, start_cluster):
    start_cluster(workers=1, max_rss=150_000)
    first = result(async_task("tests.tasks.pid"), wait=10_000)
    assert result(async_task("tests.tasks.allocate", 300), wait=10_000) > 0
    later = wait_until(
        lambda: (p := result(async_task("tests.tasks.pid"), wait=10_000)) != first and p
    )
    assert later != first


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two processors")
def test_cpu_affinity_pins_each_worker(embedded, start_cluster):
    start_cluster(workers=2, cpu_affinity=1)
    seen = {}
    for _ in range(20):
        pid, cpus = result(async_task("tests.tasks.affinity"), wait=10_000)
        seen[pid] = cpus
    assert all(len(cpus) == 1 for cpus in seen.values())
    if len(seen) == 2:
        assert len({tuple(c) for c in seen.values()}) == 2


def test_soft_timeout_fails_the_task_and_keeps_the_worker(embedded, start_cluster):
    cluster = start_cluster(workers=1, timeout=1)
    before = result(async_task("tests.tasks.pid"), wait=10_000)
    task = fetch(async_task("tests.tasks.sleep", 5), wait=10_000)
    assert task.success is False
    assert "timed out" in task.result
    assert result(async_task("tests.tasks.pid"), wait=10_000) == before
    stat = wait_until(lambda: Stat.get_all(embedded))[0]
    assert stat.reincarnations == 0
    assert cluster.stop() == 0


def test_hard_timeout_kills_the_worker_and_loses_nothing_else(embedded, start_cluster):
    start_cluster(workers=2, timeout=1)
    stuck = async_task("tests.tasks.stubborn_sleep", 30)
    others = [async_task("tests.tasks.sleep", 0.5) for _ in range(6)]
    task = fetch(stuck, wait=15_000)
    assert task is not None
    assert task.success is False
    assert "timed out" in task.result
    assert [result(i, wait=15_000) for i in others] == [0.5] * 6
    stat = wait_until(lambda: [s for s in Stat.get_all(embedded) if s.reincarnations >= 1])[0]
    assert stat.reincarnations >= 1


def test_worker_killed_from_outside_runs_its_task_again(embedded, start_cluster, tmp_path):
    start_cluster(workers=2)
    marker = tmp_path / "pid"
    task_id = async_task("tests.tasks.pid_file_then_sleep", str(marker), 2)
    others = [async_task("math.floor", i + 0.5) for i in range(5)]
    pid = int(wait_until(lambda: marker.exists() and marker.read_text()))
    os.kill(pid, signal.SIGKILL)
    task = fetch(task_id, wait=20_000)
    assert task.success is True
    assert task.result != pid
    assert task.attempt_count == 2
    assert [result(i, wait=10_000) for i in others] == list(range(5))


def test_task_that_kills_its_worker_every_time_is_given_up(embedded, start_cluster):
    start_cluster(workers=1, max_attempts=2)
    task = fetch(async_task("tests.tasks.kill_self"), wait=30_000)
    assert task.success is False
    assert "died" in task.result
    assert task.attempt_count == 2
    assert get_broker().queue_size() == 0
    assert get_broker().lock_size() == 0


def test_failed_task_is_retried_until_max_attempts(embedded, start_cluster):
    start_cluster(retry=1, max_attempts=3)
    task_id = async_task("tests.tasks.fail")
    wait_until(lambda: (t := fetch(task_id)) and t.attempt_count == 3, timeout=30)
    time.sleep(1.5)
    assert fetch(task_id).attempt_count == 3
    assert get_broker().queue_size() == 0
    assert get_broker().lock_size() == 0


def test_ack_failures_acknowledges_failures_at_once(embedded, start_cluster):
    start_cluster(retry=1, ack_failures=True)
    task_id = async_task("tests.tasks.fail")
    ok = async_task("tests.tasks.fail", ack_failure=True)
    assert fetch(task_id, wait=10_000).attempt_count == 1
    assert fetch(ok, wait=10_000).attempt_count == 1
    time.sleep(1.5)
    assert fetch(task_id).attempt_count == 1


def test_sigterm_with_tasks_in_flight_saves_each_task_once(embedded, start_cluster):
    ids = [async_task("tests.tasks.sleep", 0.3) for _ in range(20)]
    cluster = start_cluster(workers=2, queue_limit=4)
    wait_until(lambda: qengine.count_group("nothing") == 0 and any(fetch(i) for i in ids))
    assert cluster.stop() == 0
    saved = [i for i in ids if fetch(i) is not None]
    assert all(fetch(i).success for i in saved)
    assert 0 < len(saved) < 20
    assert qengine.get_broker().queue_size() == 20 - len(saved)
    assert qengine.get_broker().lock_size() == 0
    store = qengine.runtime.get_store()
    assert store.count() == len(saved)


def test_two_clusters_share_the_work_and_show_up_side_by_side(embedded, start_cluster):
    one = start_cluster(workers=1)
    two = start_cluster(workers=1)
    ids = [async_task("tests.tasks.pid_after", 0.05) for _ in range(30)]
    pids = {result(i, wait=20_000) for i in ids}
    assert len(pids) == 2
    stats = wait_until(lambda: len(Stat.get_all(embedded)) == 2 and Stat.get_all(embedded))
    assert {s.pid for s in stats} == {one.pid, two.pid}
    assert len(set(ids)) == qengine.runtime.get_store().count()
