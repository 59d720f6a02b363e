"""``qdjango.backend.QEngineBackend``: Django's tasks framework on the engine.

Results in sync mode, READY and RUNNING from the orm broker's queue, what
the backend refuses, and one task through a real cluster.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import django
import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone

import qengine
from qdjango.backend import QEngineBackend
from qdjango.models import OrmQ
from qdjango.models import Task as TaskRow
from qengine.runtime import get_broker, get_config
from tests.processes import ClusterProcess

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend, task
    from django.tasks.base import Task
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
else:
    from django_tasks import TaskResultStatus, default_task_backend, task
    from django_tasks.base import Task
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = {"default": {"BACKEND": "qdjango.backend.QEngineBackend"}}


@pytest.fixture
def tasks(settings) -> ModuleType:
    """The task module, imported (once) while TASKS names the backend, as a project has it."""
    settings.TASKS = TASKS
    return importlib.import_module("tests.qdjango.tasks_backend")


@pytest.fixture
def sync_mode(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}


@pytest.fixture
def empty_queue() -> Any:
    yield
    get_broker().purge_queue()


# -- results -------------------------------------------------------------------------------


@pytest.mark.usefixtures("sync_mode")
def test_sync_mode_runs_the_task_and_its_result_is_successful(tasks) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert result.enqueued_at is not None
    assert result.finished_at >= result.enqueued_at
    assert result.attempts == 1
    # The id is the engine's, and the engine ran the task by its dotted path.
    row = TaskRow.objects.get(id=result.id)
    assert (row.func, row.success, row.result) == ("tests.qdjango.tasks_backend.add", True, 5)
    assert qengine.result(result.id) == 5

    again = tasks.add.get_result(result.id)
    assert (again.status, again.return_value, again.task) == (result.status, 5, tasks.add)
    result.refresh()
    assert result.return_value == 5


@pytest.mark.usefixtures("sync_mode")
def test_keyword_arguments_and_the_return_value_travel_as_json(tasks) -> None:
    result = tasks.pair.enqueue(a=(1, 2), b={"k": (3,)})
    assert result.kwargs == {"a": [1, 2], "b": {"k": [3]}}
    assert result.return_value == [[1, 2], {"k": [3]}]


@pytest.mark.usefixtures("sync_mode")
def test_keywords_named_like_engine_options_reach_the_function(tasks) -> None:
    result = tasks.options_as_keywords.enqueue(group="g", hook="h", timeout=1, sync=False)
    assert result.return_value == {"group": "g", "hook": "h", "timeout": 1, "sync": False}
    assert TaskRow.objects.get(id=result.id).group is None


@pytest.mark.usefixtures("empty_queue")
def test_a_keyword_named_task_name_is_refused(tasks) -> None:
    with pytest.raises(TypeError, match="named 'task_name' cannot reach the function"):
        tasks.options_as_keywords.enqueue(task_name="x")
    assert OrmQ.objects.count() == 0


@pytest.mark.usefixtures("sync_mode")
def test_a_failing_task_is_failed_with_its_exception_class_and_traceback(tasks) -> None:
    result = tasks.fail.enqueue("it broke")
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is tasks.BrokenError
    assert error.exception_class_path == "tests.qdjango.tasks_backend.BrokenError"
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "raise BrokenError(message)" in error.traceback
    assert error.traceback.rstrip().endswith("BrokenError: it broke")
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value

    builtin = tasks.divide.enqueue(1, 0).errors[0]
    assert builtin.exception_class is ZeroDivisionError
    assert builtin.exception_class_path == "builtins.ZeroDivisionError"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("TaskTimeout: the task timed out after 3 seconds", "qengine.errors.TaskTimeout"),
        ("the worker process (pid 7) died while running this task, 2 time(s); giving up",
         "qengine.errors.QEngineError"),
    ],
)  # fmt: skip
def test_failures_the_cluster_wrote_itself_name_an_engine_error(tasks, text, path) -> None:
    now = timezone.now()
    stored = qengine.Task(
        id=uuid.uuid4().hex, name="t", func="tests.qdjango.tasks_backend.add", args=(1, 2),
        result=text, started=now, stopped=now, success=False, attempt_count=2, cluster="c",
    )  # fmt: skip
    stored.save()
    result = default_task_backend.get_result(stored.id)
    assert result.status == TaskResultStatus.FAILED
    assert (result.errors[0].exception_class_path, result.errors[0].traceback) == (path, text)
    assert result.worker_ids == ["c", "c"]


@pytest.mark.usefixtures("sync_mode")
def test_a_return_value_json_cannot_carry_fails_the_task(tasks) -> None:
    result = tasks.returns_a_set.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError


@pytest.mark.usefixtures("sync_mode")
def test_a_task_taking_context_gets_its_engine_id_and_attempt(tasks) -> None:
    result = tasks.whoami.enqueue()
    assert result.return_value == {"id": result.id, "attempt": 1}


@pytest.mark.usefixtures("sync_mode")
def test_aenqueue_and_aget_result(tasks) -> None:
    async def scenario() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(1, 1)
        fetched = await tasks.add.aget_result(result.id)
        # Both ran in asgiref's thread: close what they opened there, as a request would.
        await sync_to_async(connections.close_all)()
        return result, fetched

    result, fetched = asyncio.run(scenario())
    assert (result.return_value, fetched.return_value) == (2, 2)


@pytest.mark.usefixtures("sync_mode")
def test_task_signals_are_sent(tasks) -> None:
    if django.VERSION >= (6, 0):
        from django.tasks.signals import task_enqueued, task_finished, task_started
    else:
        from django_tasks.signals import task_enqueued, task_finished, task_started
    seen: list[tuple[str, str]] = []

    def note(signal: str) -> Any:
        return lambda sender, task_result, **_: seen.append((signal, task_result.status))

    receivers = {task_started: note("started"), task_finished: note("finished"),
                 task_enqueued: note("enqueued")}  # fmt: skip
    for signal, receiver in receivers.items():
        signal.connect(receiver, weak=False)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    assert seen == [("started", "RUNNING"), ("finished", "SUCCESSFUL"), ("enqueued", "SUCCESSFUL")]
    assert result.is_finished


def test_options_go_to_async_task(tasks, settings, sync_mode) -> None:
    settings.TASKS = {"default": {**TASKS["default"], "OPTIONS": {"group": "reports"}}}
    result = tasks.add.enqueue(1, 2)
    assert TaskRow.objects.get(id=result.id).group == "reports"


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'cached'.*allowed: ack_failure, group"):
        QEngineBackend("default", {"OPTIONS": {"cached": True}})


# -- READY and RUNNING from the orm broker's queue --------------------------------------------


@pytest.mark.usefixtures("empty_queue")
def test_a_queued_task_is_ready_until_a_cluster_leases_it(tasks) -> None:
    result = tasks.add.enqueue(4, 5)
    assert result.status == TaskResultStatus.READY
    assert OrmQ.objects.count() == 1
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value

    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 0)
    fetched = default_task_backend.get_result(result.id)
    assert (fetched.task, fetched.args, fetched.enqueued_at) == (tasks.add, [4, 5],
                                                                 result.enqueued_at)  # fmt: skip

    # What a cluster's pusher does: lease the package. The task is RUNNING while it holds it.
    [delivery] = get_broker().receive(count=1, timeout=0)
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.RUNNING, 1)

    # A lease that ran out (its cluster died) makes the task ready to run again.
    OrmQ.objects.update(lock=timezone.now() - timedelta(seconds=1))
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.READY, 1)
    assert delivery.count == 1


@pytest.mark.redis
def test_with_another_broker_an_unfinished_task_cannot_be_found(
    tasks, settings, redis_url, cluster_name
) -> None:
    keys = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    settings.Q_CLUSTER = {**keys, "name": cluster_name, "broker": redis_url}
    try:
        result = tasks.add.enqueue(1, 2)
        assert result.status == TaskResultStatus.READY
        with pytest.raises(TaskResultDoesNotExist, match="with the Redis broker qdjango cannot"):
            result.refresh()
    finally:
        get_broker().delete_queue()


# -- refused ---------------------------------------------------------------------------------


def test_run_after_is_refused(tasks) -> None:
    with pytest.raises(InvalidTask, match="run_after is not supported yet"):
        tasks.add.using(run_after=timezone.now() + timedelta(hours=1))


def test_a_priority_is_refused(tasks) -> None:
    with pytest.raises(InvalidTask, match="priority=5 is not supported yet"):
        tasks.add.using(priority=5)
    with pytest.raises(InvalidTask, match="priority=-1 is not supported yet"):
        task(priority=-1)(tasks.plain)


def test_an_async_task_is_refused(tasks) -> None:
    with pytest.raises(InvalidTask, match="async def tasks are not supported yet"):
        task(tasks.coroutine)


@pytest.mark.usefixtures("empty_queue")
def test_a_task_the_worker_cannot_find_by_its_name_is_refused(tasks) -> None:
    # Built around a function whose module name is the function, not the task.
    loose = Task(func=tasks.plain, backend="default")
    with pytest.raises(InvalidTask, match="decorate the module-level function with @task"):
        loose.enqueue(1)
    assert OrmQ.objects.count() == 0


@pytest.mark.usefixtures("empty_queue")
def test_arguments_json_cannot_carry_are_refused_before_anything_is_queued(tasks) -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.pair.enqueue(timezone.now(), 1)
    assert OrmQ.objects.count() == 0


def test_calling_a_task_object_outside_a_worker_runs_the_function(tasks) -> None:
    assert tasks.add(1, 2) == 3
    with pytest.raises(TypeError, match="only a qengine worker gives it"):
        tasks.whoami()


# -- unknown ids -----------------------------------------------------------------------------


def test_an_unknown_id_does_not_exist(tasks) -> None:
    with pytest.raises(TaskResultDoesNotExist, match="is queued or stored"):
        default_task_backend.get_result(uuid.uuid4().hex)


@pytest.mark.usefixtures("sync_mode")
def test_a_task_not_queued_through_django_tasks_does_not_exist_here(tasks) -> None:
    task_id = qengine.async_task("math.floor", 1.5)
    with pytest.raises(TaskResultDoesNotExist, match=r"not a django\.tasks task"):
        default_task_backend.get_result(task_id)


# -- a real cluster --------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_cluster_runs_an_enqueued_task_and_refresh_follows_it(tasks, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.qdjango.backend_settings"
    cluster = ClusterProcess(env, tmp_path / "qcluster.log", ["qcluster"], module="django")
    try:
        cluster.wait_published(get_config())
        release = tmp_path / "release"
        result = tasks.wait_for_file.enqueue(str(release))
        assert result.status == TaskResultStatus.READY

        wait_for_status(result, TaskResultStatus.RUNNING, cluster)
        release.touch()
        wait_for_status(result, TaskResultStatus.SUCCESSFUL, cluster)
        assert result.return_value == "released"
        assert result.attempts == 1
    finally:
        cluster.shutdown()


def wait_for_status(
    result: Any, status: str, cluster: ClusterProcess, timeout_s: float = 30
) -> None:
    deadline = timezone.now() + timedelta(seconds=timeout_s)
    while True:
        result.refresh()
        if result.status == status:
            return
        assert timezone.now() < deadline, f"still {result.status}, not {status}:\n{cluster.log()}"
        time.sleep(0.05)
