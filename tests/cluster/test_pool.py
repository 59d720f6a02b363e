"""The worker pool's executor, without a cluster around it."""

from __future__ import annotations

import os

from qengine.cluster.pool import RecyclingExecutor


def test_recycled_workers_are_replaced_under_a_backlog():
    # CPython's own executor hangs here on 3.11-3.13 (gh-115634): after two recycles
    # under a queued backlog it has no worker left and never spawns one.
    with RecyclingExecutor(1, max_tasks_per_child=2) as executor:
        futures = [executor.submit(os.getpid) for _ in range(12)]
        pids = [future.result(timeout=30) for future in futures]
    assert len(set(pids)) == 6
    assert all(pids.count(pid) == 2 for pid in set(pids))


def test_the_pool_stays_at_its_size_while_recycling():
    with RecyclingExecutor(2, max_tasks_per_child=1) as executor:
        for _ in range(5):
            futures = [executor.submit(os.getpid) for _ in range(4)]
            assert len({future.result(timeout=30) for future in futures}) == 4
            assert len(executor._processes) <= 2
