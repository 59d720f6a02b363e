"""qdjango's django_q-style API: model instances and querysets in sync mode; django_redis.

Sync mode runs each task inline exactly as a worker would and saves it as
the monitor would, so these tests see the same rows a cluster writes; the
spec's examples against a real cluster are in ``test_spec_examples.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db.models import QuerySet
from django.dispatch import receiver

from qdjango.brokers import get_broker
from qdjango.conf import Conf
from qdjango.models import Schedule, Task
from qdjango.monitor import Stat, info
from qdjango.signals import post_execute, pre_enqueue, pre_execute
from qdjango.tasks import (
    AsyncTask,
    Chain,
    Iter,
    async_chain,
    async_iter,
    async_task,
    count_group,
    delete_cached,
    delete_group,
    fetch,
    fetch_group,
    queue_size,
    result,
    result_group,
    schedule,
)
from qengine.brokers import broker_kind
from qengine.errors import ConfigError, ScheduleError
from qengine.runtime import get_config
from qengine.schedules import Schedule as EngineSchedule
from qengine.status import Stat as EngineStat
from tests.qdjango import cluster_settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sync_mode(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}


def elapsed_s(start: float) -> float:
    return time.monotonic() - start


# -- what a django_q user imports -----------------------------------------------------------


def test_django_q_modules_have_their_qdjango_counterparts() -> None:
    from qdjango import brokers, cluster, conf, models, monitor, signals, tasks
    from qengine.brokers import Broker
    from qengine.cluster.cluster import Cluster as EngineCluster

    assert tasks.Schedule is models.Schedule
    assert tasks.Task is models.Task
    assert brokers.Broker is Broker
    assert issubclass(cluster.Cluster, EngineCluster)
    assert issubclass(monitor.Stat, EngineStat)
    assert get_config().workers == conf.Conf.WORKERS
    # django_q's own names for keys that are spelled differently here
    assert Conf.PREFIX == Conf.CLUSTER_NAME == get_config().name
    assert Conf.COMPRESSED is get_config().compress
    assert (Conf.STARTING, Conf.IDLE, Conf.WORKING, Conf.STOPPING, Conf.STOPPED) == (
        "Starting", "Idle", "Working", "Stopping", "Stopped",
    )  # fmt: skip
    assert {"pre_enqueue", "pre_execute", "post_execute"} <= set(signals.__all__)


# -- tasks and results ----------------------------------------------------------------------


def test_fetch_gives_the_saved_model_row_by_id_or_name(sync_mode) -> None:
    task_id = async_task("math.copysign", 2, -2, task_name="signed")
    task = fetch(task_id)
    assert type(task) is Task
    assert not task._state.adding, "a row read from the database"
    assert (task.result, task.args, task.success, task.func) == (
        -2.0,
        (2, -2),
        True,
        "math.copysign",
    )
    assert fetch("signed") == task
    assert result(task_id) == result("signed") == -2.0
    task.result = "edited"
    task.save()
    assert result(task_id) == "edited", "the instance is the row the engine reads"


def test_fetch_and_result_of_an_unknown_task_wait_then_give_none() -> None:
    start = time.monotonic()
    assert fetch("no-such-task", wait=100) is None
    assert 0.09 <= elapsed_s(start) < 5
    assert result("no-such-task") is None


def test_cached_fetch_is_an_unsaved_instance_that_save_stores(sync_mode) -> None:
    task_id = async_task("math.floor", 100, cached=True)
    assert not Task.objects.filter(id=task_id).exists()
    assert result(task_id, cached=True) == 100
    task = fetch(task_id, cached=True)
    assert isinstance(task, Task)
    assert task._state.adding
    assert (task.result, task.success, task.func) == (100, True, "math.floor")
    task.save()
    stored = Task.objects.get(id=task_id)
    assert (stored.result, stored.args, stored.started) == (100, (100,), task.started)
    delete_cached(task_id)
    assert fetch(task_id, cached=True) is None


def test_a_queued_task_waits_in_the_broker_until_a_cluster_runs_it() -> None:
    task_id = async_task("math.floor", 1.5)
    assert queue_size() == 1
    assert fetch(task_id) is None
    get_broker().purge_queue()
    assert queue_size() == 0


# -- groups ---------------------------------------------------------------------------------


def test_fetch_group_is_a_queryset_oldest_first(sync_mode) -> None:
    ids = [async_task("math.modf", i, group="g") for i in range(3)]
    failed = async_task("math.modf", "x", group="g")
    async_task("math.modf", 9, group="other")

    group = fetch_group("g")
    assert isinstance(group, QuerySet)
    assert group.model is Task
    assert list(group.values_list("id", flat=True)) == [*ids, failed]
    assert list(fetch_group("g", failures=False).values_list("id", flat=True)) == ids
    assert fetch_group("g").exclude(success=False).count() == 3
    assert (count_group("g"), count_group("g", failures=True)) == (4, 1)
    assert result_group("g") == [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0)]
    assert len(result_group("g", failures=True)) == 4
    assert fetch_group("g", wait=1000, count=4).count() == 4

    assert delete_group("g") == 4
    assert not fetch_group("g").exists()
    assert Task.objects.filter(id__in=ids).count() == 3, "without tasks=True only the label goes"
    async_task("math.floor", 1.5, group="g")
    assert delete_group("g", tasks=True) == 1
    assert not Task.objects.filter(group="g").exists()


def test_fetch_group_waits_for_its_count_at_most_wait_ms() -> None:
    start = time.monotonic()
    assert fetch_group("empty", wait=100, count=2).count() == 0
    assert 0.09 <= elapsed_s(start) < 5


def test_cached_fetch_group_is_a_list_of_unsaved_tasks(sync_mode) -> None:
    for i in range(3):
        async_task("math.floor", i, group="c", cached=True)
    tasks = fetch_group("c", cached=True)
    assert isinstance(tasks, list)
    assert sorted(t.result for t in tasks) == [0, 1, 2]
    assert all(isinstance(t, Task) and t._state.adding for t in tasks)
    assert not fetch_group("c").exists()
    assert count_group("c", cached=True) == 3
    assert delete_group("c", tasks=True, cached=True) == 3
    assert fetch_group("c", cached=True) == []


# -- AsyncTask, Iter, Chain -------------------------------------------------------------------


def test_async_task_instance_fetches_model_instances(sync_mode) -> None:
    a = AsyncTask("math.floor", 1.5, group="a")
    assert a.fetch() is None
    assert a.fetch_group() is None
    a.run()
    task = a.fetch()
    assert isinstance(task, Task)
    assert not task._state.adding
    assert list(a.fetch_group()) == [task]
    assert a.result_group() == [1]
    a.cached = True
    assert a.fetch() is None, "a changed task has no result until it runs again"
    a.run()
    cached = a.fetch()
    assert cached.id == a.id
    assert cached._state.adding


def test_iter_and_async_iter_collate_into_one_model_row(sync_mode) -> None:
    i = Iter("math.copysign")
    for n in (1, 2, 3):
        assert i.append(n, -1) == n
    assert i.fetch() is None
    i.run()
    task = i.fetch()
    assert isinstance(task, Task)
    assert task.result == i.result() == [-1.0, -2.0, -3.0]
    assert task.args == ((1, -1), (2, -1), (3, -1))

    iter_id = async_iter("math.floor", [1.5, 2.5])
    assert fetch(iter_id).result == [1, 2]

    cached = Iter("math.floor", [0.5], cached=True)
    cached.run()
    assert cached.fetch()._state.adding
    assert cached.result() == [0]


def test_chains_fetch_a_queryset_or_a_cached_list(sync_mode) -> None:
    chain = Chain()
    chain.append("math.copysign", 1, -1)
    chain.append("math.floor", 1)
    assert chain.fetch() is None
    chain.run()
    rows = chain.fetch()
    assert isinstance(rows, QuerySet)
    assert [t.func for t in rows] == ["math.copysign", "math.floor"]
    assert chain.result() == [-1.0, 1]
    assert chain.current() == chain.length() == 2

    cached = Chain([("math.floor", (2.5,)), ("math.floor", (3.5,))], cached=True)
    cached.run()
    links = cached.fetch()
    assert [t.result for t in links] == [2, 3]
    assert all(t._state.adding for t in links)

    group = async_chain([("math.floor", (4.5,)), ("math.floor", (5.5,))])
    assert [t.result for t in fetch_group(group)] == [4, 5]


# -- schedules --------------------------------------------------------------------------------


def test_schedule_returns_the_model_row() -> None:
    item = schedule(
        "math.hypot", 3, 4, name="hypot", schedule_type=Schedule.MINUTES, minutes=5, repeats=24,
        q_options={"timeout": 30, "broker_name": "broker_1"},
    )  # fmt: skip
    assert type(item) is Schedule
    assert Schedule.objects.get(name="hypot") == item
    assert (item.func, item.schedule_type, item.minutes, item.repeats) == ("math.hypot", "I", 5, 24)
    assert item.q_options == {"timeout": 30, "broker_name": "broker_1"}
    assert item.next_run is not None
    assert item.last_run() is None
    assert item.success() is None
    engine = EngineSchedule.get(item.pk)
    assert engine is not None
    assert (engine.args, engine.next_run) == ((3, 4), item.next_run)


def test_schedule_refuses_what_the_engine_refuses_and_stores_nothing() -> None:
    with pytest.raises(ScheduleError, match="cron"):
        schedule("math.floor", 1, schedule_type=Schedule.CRON, cron="not cron")
    schedule("math.floor", 1, name="once")
    with pytest.raises(ScheduleError, match="already exists"):
        schedule("math.floor", 2, name="once")
    with pytest.raises(ScheduleError, match="broker instance"):
        schedule("math.floor", 2, q_options={"broker": get_broker()})
    assert list(Schedule.objects.values_list("name", flat=True)) == ["once"]


def test_a_cron_schedule_starts_at_its_first_slot() -> None:
    item = schedule("math.hypot", 3, 4, schedule_type=Schedule.CRON, cron="0 22 * * 1-5")
    assert (item.next_run.hour, item.next_run.minute) == (22, 0)
    assert item.next_run.weekday() < 5


# -- signals (1.13) -----------------------------------------------------------------------------


def test_signals_get_the_spec_arguments_in_sync_mode(sync_mode, capsys) -> None:
    seen: list[tuple[str, object, dict[str, object]]] = []

    @receiver(pre_enqueue)
    def my_pre_enqueue_callback(sender, task, **kwargs):  # the spec's receivers
        print("Task {} will be enqueued".format(task["name"]))
        seen.append(("pre_enqueue", sender, {"task": task}))

    @receiver(pre_execute)
    def my_pre_execute_callback(sender, func, task, **kwargs):
        print("Task {} will be executed by calling {}".format(task["name"], func))
        seen.append(("pre_execute", sender, {"task": task, "func": func}))

    @receiver(post_execute)
    def my_post_execute_callback(sender, task, **kwargs):
        seen.append(("post_execute", sender, {"task": task}))

    try:
        task_id = async_task("math.copysign", 2, -2, task_name="signalled")
    finally:
        pre_enqueue.disconnect(my_pre_enqueue_callback)
        pre_execute.disconnect(my_pre_execute_callback)
        post_execute.disconnect(my_post_execute_callback)

    assert [(name, sender) for name, sender, _ in seen] == [
        ("pre_enqueue", "qdjango"), ("pre_execute", "qdjango"), ("post_execute", "qdjango"),
    ]  # fmt: skip
    import math

    assert seen[1][2]["func"] is math.copysign, "a dotted path arrives resolved"
    finished = seen[2][2]["task"]
    assert (finished["id"], finished["result"], finished["success"]) == (task_id, -2.0, True)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Task signalled will be enqueued",
        "Task signalled will be executed by calling <built-in function copysign>",
    ]


# -- brokers and monitor ------------------------------------------------------------------------


def test_get_broker_takes_a_queue_name_first_as_django_q_does() -> None:
    broker = get_broker()
    assert broker is get_broker(), "one shared broker per configuration"
    assert broker.list_key == get_config().name
    other = get_broker("other-queue")
    try:
        assert other.list_key == "other-queue"
        async_task("math.floor", 1.5, broker=other)
        assert (queue_size(), queue_size(other)) == (0, 1)
    finally:
        other.purge_queue()
        other.close()


def test_stat_and_info_without_a_cluster(capsys) -> None:
    assert Stat.get_all() == []
    assert Stat.get_all(get_broker()) == []
    assert Stat.get(12345) is None
    summary = info()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"-- {get_config().name} summary --"
    assert (summary.clusters, summary.workers) == (0, 0)


# -- django_redis ------------------------------------------------------------------------------


@pytest.fixture
def django_redis(redis_url, settings, cluster_name) -> Iterator[str]:
    """A django-redis ``default`` cache and ``Q_CLUSTER['django_redis']`` naming it.

    Yields the cluster name, which also prefixes the cache's keys; every
    key holding it is removed afterwards.
    """
    from django_redis import get_redis_connection

    values = cluster_settings.django_redis_settings(redis_url, cluster_name)
    settings.CACHES = values["CACHES"]
    settings.Q_CLUSTER = values["Q_CLUSTER"]
    yield cluster_name
    client = get_redis_connection("default")
    for key in client.scan_iter(match=f"*{cluster_name}*"):
        client.delete(key)


@pytest.mark.redis
def test_django_redis_puts_broker_and_cache_on_the_caches_pool(django_redis) -> None:
    from django_redis import get_redis_connection

    assert broker_kind(get_config()).name == "redis"
    broker = get_broker()
    assert broker.connection.connection_pool is get_redis_connection("default").connection_pool
    async_task("math.floor", 1.5)
    assert queue_size() == 1
    [delivery] = broker.receive(timeout=1)
    broker.acknowledge(delivery.ack_id)
    assert queue_size() == 0

    cached_id = async_task("math.floor", 2.5, sync=True, cached=True)
    key = f"qengine:{django_redis}:result:{cached_id}"
    assert caches["default"].get(key) is not None, "cached results go to the django-redis cache"
    task = fetch(cached_id, cached=True)
    assert (task.result, task._state.adding) == (2, True)
    task.save()
    assert Task.objects.get(id=cached_id).result == 2


@pytest.mark.redis
def test_closing_a_broker_leaves_the_shared_pool_connected(django_redis) -> None:
    from django_redis import get_redis_connection

    pool = get_redis_connection("default").connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("CLIENT", "ID")
        before = connection.read_response()
        other = get_broker("another-queue")
        assert other.queue_size() == 0
        other.close()
        connection.send_command("CLIENT", "ID")
        assert connection.read_response() == before, "the same connection, never dropped"
    finally:
        pool.release(connection)


@pytest.mark.redis
def test_a_replaced_configuration_leaves_the_shared_pool_connected(django_redis) -> None:
    from django_redis import get_redis_connection

    from qengine.runtime import get_notifier, get_stats, reset

    pool = get_redis_connection("default").connection_pool
    notifier = get_notifier(get_config())
    assert notifier is not None
    assert notifier.client.connection_pool is pool
    assert get_stats(get_config()).client.connection_pool is pool  # the status store's too
    connection = pool.get_connection()
    try:
        connection.send_command("CLIENT", "ID")
        before = connection.read_response()
        reset()  # closes what the replaced configuration opened: notifier, status store
        connection.send_command("CLIENT", "ID")
        assert connection.read_response() == before, "the same connection, never dropped"
    finally:
        pool.release(connection)


def test_django_redis_must_name_a_django_redis_cache(settings) -> None:
    keys = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    settings.Q_CLUSTER = {**keys, "django_redis": "missing"}
    with pytest.raises(ConfigError, match="no such cache in CACHES"):
        get_broker()
    settings.Q_CLUSTER = {**keys, "django_redis": "default"}  # the tests' locmem cache
    with pytest.raises(ConfigError, match="not a django-redis cache"):
        get_broker()


@pytest.mark.redis
@pytest.mark.cluster
def test_a_cluster_takes_tasks_through_the_django_redis_pool(django_redis, redis_url) -> None:
    plain = async_task("math.copysign", 3, -1)
    uses_orm = async_task("tests.qdjango.tasks.count_tasks")
    assert queue_size() == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.qdjango.cluster_settings",
        QDJANGO_TEST_DJANGO_REDIS=redis_url,
        QDJANGO_TEST_DJANGO_REDIS_PREFIX=django_redis,
    )
    done = subprocess.run(
        [sys.executable, "-m", "django", "qcluster", "--run-once"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert result(plain) == -3.0
    assert fetch(uses_orm).success
    assert queue_size() == 0
