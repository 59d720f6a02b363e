"""``async_task(..., on_commit=…)`` under Django: queued on commit, never on rollback.

The ``orm`` broker of the test settings keeps its queue in the test
database, so ``queue_size()`` counts what was really queued, and inside an
``atomic`` block it even sees the block's own uncommitted rows: a task
queued too early would show.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import TestCase, override_settings

from qdjango.tasks import async_task, async_tasks, fetch, queue_size, result
from qdjango.transactions import register
from qengine import transactions
from qengine.errors import ConfigError
from qengine.signals import pre_enqueue


@pytest.fixture(autouse=True)
def commit_hook() -> Iterator[None]:
    """qdjango's commit hook, whether or not ``ready()`` registers it yet."""
    previous = transactions.set_commit_hook(None)
    register()
    yield
    transactions.set_commit_hook(previous)


@pytest.fixture
def sync_mode(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}


@pytest.fixture
def enqueued() -> Iterator[list[str]]:
    """Ids of the tasks ``pre_enqueue`` announced."""
    ids: list[str] = []

    def receiver(sender: Any, task: Any, **kwargs: Any) -> None:
        ids.append(task.id)

    pre_enqueue.connect(receiver)  # held weakly: the local name keeps it alive
    yield ids
    pre_enqueue.disconnect(receiver)


# -- real transactions --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_inside_atomic_the_task_is_queued_only_when_the_block_commits(enqueued) -> None:
    with transaction.atomic():
        task_id = async_task("math.floor", 1.5, on_commit=True)
        assert queue_size() == 0
        assert enqueued == []
    assert queue_size() == 1
    assert enqueued == [task_id]


@pytest.mark.django_db(transaction=True)
def test_a_batch_waits_for_the_commit_whole_and_a_rolled_back_one_never_queues(
    enqueued,
) -> None:
    calls = [("math.floor", (1.5,)), ("math.pow", (2, 10))]
    with transaction.atomic():
        ids = async_tasks(calls, on_commit=True)
        assert queue_size() == 0
        assert enqueued == []
    assert queue_size() == 2
    assert enqueued == ids  # in the order of the calls

    with transaction.atomic():
        async_tasks(calls, on_commit=True)
        transaction.set_rollback(True)
    assert queue_size() == 2


@pytest.mark.django_db(transaction=True)
def test_nested_blocks_wait_for_the_outermost_commit() -> None:
    with transaction.atomic():
        with transaction.atomic():
            async_task("math.floor", 1.5, q_options={"on_commit": True})
        assert queue_size() == 0
    assert queue_size() == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_never_queues_the_task(enqueued) -> None:
    def failing_view() -> None:
        with transaction.atomic():
            async_task("math.floor", 1.5, on_commit=True)
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError, match="work failed"):
        failing_view()
    with transaction.atomic():
        async_task("math.floor", 2.5, on_commit=True)
        transaction.set_rollback(True)
    assert queue_size() == 0
    assert enqueued == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_task_is_queued_at_once() -> None:
    async_task("math.floor", 1.5, on_commit=True)
    assert queue_size() == 1


@pytest.mark.django_db(transaction=True)
def test_a_database_named_by_on_commit_is_the_one_waited_for() -> None:
    with transaction.atomic(using="default"):
        async_task("math.floor", 1.5, on_commit="default")
        assert queue_size() == 0
    assert queue_size() == 1


@pytest.mark.django_db(transaction=True)
def test_an_unknown_database_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"on_commit='nowhere' names no Django database"):
        async_task("math.floor", 1.5, on_commit="nowhere")
    assert queue_size() == 0


@pytest.mark.django_db(transaction=True)
def test_sync_mode_runs_the_task_after_the_commit(sync_mode) -> None:
    with transaction.atomic():
        task_id = async_task("math.floor", 1.5, on_commit=True)
        assert fetch(task_id) is None
    assert result(task_id) == 1


# -- Django's test helpers ------------------------------------------------------------------


@pytest.mark.django_db
def test_capture_on_commit_callbacks_runs_the_enqueue(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        async_task("math.floor", 1.5, on_commit=True)
        assert queue_size() == 0
    assert len(callbacks) == 1
    assert queue_size() == 1


@pytest.mark.django_db
def test_captured_callbacks_not_executed_queue_nothing(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        async_task("math.floor", 1.5, on_commit=True)
    assert len(callbacks) == 1
    assert queue_size() == 0


@pytest.mark.django_db(transaction=True)
def test_a_django_test_case_runs_it_with_capture_on_commit_callbacks(settings) -> None:
    # A project's own TestCase, run whole (class atomics and all) as Django's runner would.
    sync = {**settings.Q_CLUSTER, "sync": True}

    @override_settings(Q_CLUSTER=sync)
    class ProjectTest(TestCase):
        def test_task_runs_after_the_captured_commit(self) -> None:
            with self.captureOnCommitCallbacks(execute=True) as callbacks:
                task_id = async_task("math.floor", 2.5, on_commit=True)
                assert fetch(task_id) is None
            assert len(callbacks) == 1
            assert result(task_id) == 2

    outcome = unittest.TestResult()
    unittest.TestSuite([ProjectTest("test_task_runs_after_the_captured_commit")]).run(outcome)
    assert outcome.testsRun == 1
    assert outcome.wasSuccessful(), outcome.errors + outcome.failures


# -- without the hook -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_without_the_hook_on_commit_says_it_needs_django() -> None:
    transactions.set_commit_hook(None)
    with pytest.raises(ConfigError, match=r"on_commit=True needs .*Django"):
        async_task("math.floor", 1.5, on_commit=True)
    assert queue_size() == 0
