"""The worker pool's executor, without a cluster around it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from qengine.cluster.pool import RecyclingExecutor, TaskModules, WorkerPool
from qengine.signing import Signer
from qengine.task import TaskMessage, new_id


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


def test_a_worker_loads_neither_broker_clients_nor_sqlalchemy():
    # Workers fork from a server that imported the pool module; whatever that pulls in
    # is resident in every worker. Running a task must not pull in more.
    script = (
        "import sys, qengine.cluster.pool as pool\n"
        "from qengine.cluster.worker import execute\n"
        "from qengine.task import TaskMessage\n"
        "outcome = execute(TaskMessage(id='0' * 32, name='n', func='math.floor', args=(1.5,)))\n"
        "assert outcome.success, outcome\n"
        "print(sorted(m for m in ('sqlalchemy', 'redis', 'boto3', 'pymongo', 'psutil', 'croniter')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_still_resolves_from_the_package():
    import qengine

    missing = [name for name in qengine.__all__ if getattr(qengine, name, None) is None]
    assert missing == []
    assert qengine.status.Stat is not None  # submodules load on first use too


def test_a_hand_off_runs_each_task_under_the_timeout_handed_with_it():
    signer = Signer("pool-tests", "pool")
    slow = TaskMessage(id=new_id()[0], name="slow", func="tests.tasks.sleep", args=(5,))
    quick = TaskMessage(id=new_id()[0], name="quick", func="tests.tasks.add", args=(1, 2))
    pool = WorkerPool(workers=1, recycle=0, signer=signer)
    pool.start()
    try:
        # The timeout travels with the task: the message itself names none.
        handoffs = [(1, signer.dumps(slow), 0.3), (2, signer.dumps(quick), None)]
        back = pool.submit(handoffs).result(timeout=30)
    finally:
        pool.shutdown(wait=True)
    assert back.seqs == [1, 2]
    assert back.timed_out == [True, False]
    assert back.successes == [False, True]
    assert pickle.loads(back.result_blobs[1]) == 3
    assert back.pid in pool.processes
    assert back.rss_kb > 0
    assert [seq for seq, *_ in back.rows()] == [1, 2]


def test_a_new_worker_imports_the_modules_of_the_tasks_handed_so_far():
    """A recycled worker's first task must not pay for importing its module."""
    signer = Signer("pool-tests", "pool")
    pool = WorkerPool(workers=1, recycle=1, signer=signer)  # a fresh worker per hand-off
    pool.start()

    def handoff(seq: int) -> bytes:
        message = TaskMessage(id=new_id()[0], name="n", func="tests.tasks.imported",
                              args=("colorsys",))  # fmt: skip
        return pool.submit([(seq, signer.dumps(message), None)]).result(timeout=30)

    try:
        before = handoff(1)  # its worker started before anything was noted
        pool.task_modules.note("colorsys.rgb_to_hsv")
        handoff(2)  # the worker that runs this one was started before the note, too
        after = handoff(3)
    finally:
        pool.shutdown(wait=True)
    assert pickle.loads(before.result_blobs[0]) is False
    assert pickle.loads(after.result_blobs[0]) is True
    assert pool.task_modules.names == ("colorsys",)


def test_a_worker_freezes_what_it_starts_with():
    signer = Signer("pool-tests", "pool")
    message = TaskMessage(id=new_id()[0], name="n", func="tests.tasks.frozen_objects")
    pool = WorkerPool(workers=1, recycle=0, signer=signer)
    pool.start()
    try:
        back = pool.submit([(1, signer.dumps(message), None)]).result(timeout=30)
    finally:
        pool.shutdown(wait=True)
    assert pickle.loads(back.result_blobs[0]) > 10_000  # the imports, frozen by the initializer


def test_task_modules_come_from_paths_and_callables_and_never_fail():
    import functools
    import json

    modules = TaskModules()
    for func in ("tests.tasks.add", json.dumps, functools.partial(json.dumps), object(), "nodots",
                 "tests.tasks.echo"):  # fmt: skip
        modules.note(func)
    assert modules.names == ("tests.tasks", "json", "functools", "")
    assert pickle.loads(pickle.dumps(modules)) == modules.names
