"""Results that cannot be stored and exceptions that cannot be shown: failures, never crashes.

A task returning an unpicklable value (a closure over a lock, a generator, a
socket), one that pickles but cannot be loaded back, or raising an exception
that holds a lock, refuses pickling, refuses ``str`` or is no ``Exception``
at all, is stored as a failed task whose result says why: inline (sync mode)
and in a real cluster, where the tasks handed to a worker with it, before and
after, still succeed, none is lost, and the cluster runs on. Packages at the
edge of ``max_package_size`` are refused at call time or run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import qengine
from qengine import async_task, fetch, queue_size
from qengine.errors import PackageTooLarge
from qengine.runtime import get_store
from tests import bad_tasks
from tests.cluster.test_cluster import wait_until
from tests.qengine.test_properties import largest_fitting_argument

BAD = "tests.bad_tasks."

# Each bad task and the words its stored result must hold.
CASES: list[tuple[str, tuple[str, ...]]] = [
    ("returns_closure_over_a_lock", ("result could not be pickled", "_thread.lock")),
    ("returns_generator", ("result could not be pickled", "generator")),
    ("returns_socket", ("result could not be pickled", "socket")),
    ("returns_unloadable", ("result could not be unpickled", "cannot be loaded back")),
    ("returns_reduce_raising_unprintable", ("result could not be pickled", "Unprintable")),
    ("raises_exception_holding_a_lock", ("LockedError: held a lock", "Traceback")),
    ("raises_exception_whose_reduce_fails", ("ReduceFailsError: reduce fails", "Traceback")),
    ("raises_unprintable_exception", ("Unprintable: <exception str() failed>", "Traceback")),
    ("raises_base_exception", ("TaskAbort: aborted past except Exception", "Traceback")),
    ("exits", ("SystemExit: 3", "Traceback")),
]


@pytest.fixture
def close_sockets() -> Iterator[None]:
    yield
    while bad_tasks.OPEN_SOCKETS:
        bad_tasks.OPEN_SOCKETS.pop().close()


def assert_failed_with(task_id: str, words: tuple[str, ...]) -> None:
    task = fetch(task_id)
    assert task is not None, f"task {task_id} was lost"
    assert task.success is False
    assert isinstance(task.result, str)
    for word in words:
        assert word in task.result, task.result
    assert qengine.result(task_id) == task.result  # readable through the API too


@pytest.mark.parametrize(("name", "words"), CASES, ids=[name for name, _ in CASES])
def test_inline_bad_results_and_exceptions_are_stored_failures(close_sockets, name, words):
    qengine.configure(qengine.get_config(), sync=True)
    # A hook and a cached copy make the caller read the result back, as a cluster's monitor does.
    assert_failed_with(async_task(BAD + name, hook="tests.tasks.record_hook"), words)
    cached = fetch(async_task(BAD + name, cached=True), cached=True)
    assert cached is not None
    assert cached.success is False
    assert words[0] in cached.result


@pytest.mark.cluster
def test_a_cluster_stores_bad_results_as_failures_and_loses_nothing(embedded, start_cluster):
    # A backlog before the start, so workers get hand-offs of many tasks: a bad task
    # must not take the good ones handed over with it down.
    qengine.configure(embedded, queue_limit=64, bulk=16)
    good: dict[str, int] = {}
    bad: dict[str, tuple[str, ...]] = {}
    for round_ in range(3):
        for number, (name, words) in enumerate(CASES):
            good[async_task(BAD + "square", number, hook="tests.tasks.record_hook")] = number**2
            bad[async_task(BAD + name, hook="tests.tasks.record_hook")] = words
        good[async_task(BAD + "square", 100 + round_)] = (100 + round_) ** 2
    cluster = start_cluster()
    wait_until(lambda: all(fetch(i) is not None for i in [*good, *bad]), timeout=60)
    for task_id, words in bad.items():
        assert_failed_with(task_id, words)
    for task_id, value in good.items():
        task = fetch(task_id)
        assert (task.success, task.result) == (True, value), task.result
    assert get_store().count() == len(good) + len(bad)  # each stored once, none lost
    # The cluster runs on, with a worker that ran all of that.
    assert cluster.process.poll() is None
    assert qengine.result(async_task(BAD + "square", 12), wait=30_000) == 144
    assert "monitor error" not in cluster.log()
    assert "could not finish" not in cluster.log()
    assert cluster.stop() == 0


@pytest.mark.cluster
def test_a_cluster_runs_a_package_just_under_max_package_size(embedded, start_cluster):
    config = qengine.configure(embedded, max_package_size=64 * 1024)
    edge = largest_fitting_argument()  # the options of the calls below: none
    before = queue_size()
    with pytest.raises(PackageTooLarge, match="max_package_size"):
        async_task(BAD + "size_of", b"x" * (edge + 1), task_name="edge")
    assert queue_size() == before
    task_id = async_task(BAD + "size_of", b"x" * edge, task_name="edge")
    cluster = start_cluster()
    assert qengine.result(task_id, wait=30_000) == edge
    assert config.max_package_size == 64 * 1024
    assert cluster.stop() == 0
