"""The task API in sync mode: every example of spec chapters 1.4-1.7, adapted to qengine."""

from __future__ import annotations

import logging
import math

import pytest

import qengine
from qengine import (
    AsyncTask,
    Chain,
    Iter,
    Task,
    async_chain,
    async_iter,
    async_task,
    count_group,
    delete_group,
    fetch,
    fetch_group,
    result,
    result_group,
)
from qengine.signals import post_execute, pre_enqueue, pre_execute
from tests import tasks


@pytest.fixture(autouse=True)
def sync_mode():
    qengine.configure(qengine.get_config(), sync=True)
    tasks.HOOK_LOG.clear()


# -- 1.4.1 async_task -----------------------------------------------------------------


def test_async_task_by_path_and_by_callable():
    task_id = async_task("math.copysign", 2, -2)
    assert result(task_id) == -2.0
    task_id = async_task(math.copysign, 2, -2)
    assert result(task_id, 200) == -2.0
    task = fetch(task_id)
    assert task.func == "math.copysign"
    assert task.args == (2, -2)
    assert task.success is True


def test_hook_gets_the_complete_task():
    task_id = async_task("math.modf", 2.5, hook="tests.tasks.record_hook")
    (hooked,) = tasks.HOOK_LOG
    assert isinstance(hooked, Task)
    assert hooked.id == task_id
    assert hooked.result == (0.5, 2.0)
    assert fetch(task_id).hook == "tests.tasks.record_hook"


def test_q_options_carry_the_options_and_free_the_keywords_for_the_function():
    opts = {"hook": "tests.tasks.record_hook", "group": "math", "timeout": 30}
    task_id = async_task("math.modf", 2.5, q_options=opts)
    assert fetch(task_id).group == "math"
    assert len(tasks.HOOK_LOG) == 1
    # A key in q_options frees the same keyword for the function (Django Q's rule).
    free = {"hook": None, "group": None}
    task_id = async_task("tests.tasks.echo", 1, hook="mine", group="g", q_options=free)
    assert result(task_id) == ((1,), {"hook": "mine", "group": "g"})
    assert fetch(task_id).group is None


def test_unknown_q_options_are_rejected_with_the_allowed_list():
    with pytest.raises(ValueError, match=r"'retries'.*allowed: ack_failure, broker, cached"):
        async_task("math.floor", 1, q_options={"retries": 3})


def test_task_name_overrides_the_humanized_name():
    task_id = async_task("math.floor", 1.5, task_name="nightly-floor")
    assert fetch(task_id).name == "nightly-floor"
    assert fetch("nightly-floor").id == task_id
    humanized = fetch(async_task("math.floor", 1.5)).name
    assert humanized.count("-") >= 2


def test_func_that_is_neither_string_nor_callable_is_a_type_error():
    with pytest.raises(TypeError, match="dotted path string or a callable"):
        async_task(42)
    with pytest.raises(ValueError, match="dotted path"):
        async_task("floor", 1)


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", -1), ("cached", 0), ("save", "yes"), ("group", 5), ("broker", "redis")],
)
def test_bad_option_values_are_rejected(option, value):
    with pytest.raises(ValueError, match=option):
        async_task("math.floor", 1, **{option: value})


def test_lambdas_and_closures_run():
    offset = 10
    task_id = async_task(lambda x: x + offset, 5)
    assert result(task_id) == 15


# -- 1.4.2 AsyncTask -------------------------------------------------------------------


def test_async_task_class_runs_and_invalidates_on_change():
    a = AsyncTask("math.floor", 1.5, group="math")
    a.cached = True
    a.run()
    assert a.result(wait=-1) == 1
    a.args = (2.5,)
    assert a.result() is None, "a changed task has no result until it runs again"
    a.run()
    assert a.result(wait=10) == 2
    assert a.fetch().args == (2.5,)
    a.sync = True
    assert not a.started


def test_async_task_class_group_results():
    a = AsyncTask("math.floor", 2.5, group="math", cached=True)
    for _ in range(3):
        a.run()
    assert a.result_group(count=3) == [2, 2, 2]
    assert len(a.fetch_group(count=3)) == 3


# -- 1.4.3 cached operations --------------------------------------------------------


@pytest.mark.parametrize("cache", ["memory", "store"])
def test_cached_result_and_save_to_the_store(cache):
    qengine.configure(qengine.get_config(), cache=cache)
    task_id = async_task("math.floor", 100, cached=10)
    assert result(task_id) is None, "a cached result is not in the store"
    assert result(task_id, wait=50, cached=True) == 100
    task = fetch(task_id, cached=True)
    task.save()
    assert result(task_id) == 100


@pytest.mark.redis
def test_cached_results_in_redis(redis_url, redis_client, cluster_name):
    qengine.configure(
        name=cluster_name, cache=redis_url, sync=True, store=qengine.get_config().store
    )
    for i in range(100):
        async_task("math.frexp", i, group="frexp", cached=True)
    results = result_group("frexp", wait=50, count=100, cached=True)
    assert sorted(results) == sorted(math.frexp(i) for i in range(100))
    assert count_group("frexp", cached=True) == 100
    assert delete_group("frexp", tasks=True, cached=True) == 100
    assert count_group("frexp", cached=True) == 0
    task_id = async_task("math.floor", 3.5, cached=60)
    ttl = redis_client.ttl(f"qengine:{cluster_name}:result:{task_id}")
    assert 0 < ttl <= 60
    qengine.delete_cached(task_id)
    assert result(task_id, cached=True) is None
    leftovers = redis_client.keys(f"qengine:{cluster_name}:*")
    if leftovers:
        redis_client.delete(*leftovers)


def test_global_cached_setting_applies_to_every_call():
    qengine.configure(qengine.get_config(), cached=True, cache="memory")
    task_id = async_task("math.floor", 7.5)
    assert result(task_id) == 7
    assert Task.get_task(task_id) is None


# -- 1.4.4 synchronous testing -------------------------------------------------------


def test_buggy_code_is_stored_as_a_failure_naming_the_import_error(capsys):
    task_id = async_task("my.buggy.code", sync=True)
    task = fetch(task_id)
    if not task.success:
        print(f"An error occurred: {task.result}")
    printed = capsys.readouterr().out
    assert "An error occurred: ModuleNotFoundError: No module named 'my'" in printed


def test_failing_task_result_is_the_error_with_traceback():
    task = fetch(async_task("tests.tasks.fail", "bad input"))
    assert task.success is False
    assert task.result.startswith("ValueError: bad input")
    assert "Traceback" in task.result


def test_unpicklable_result_becomes_a_failure():
    task = fetch(async_task("tests.tasks.unpicklable_result"))
    assert task.success is False
    assert "could not be pickled" in task.result


def test_per_call_sync_without_global_sync():
    qengine.configure(qengine.get_config(), sync=False)
    task_id = async_task("math.floor", 9.5, sync=True)
    assert result(task_id) == 9


# -- 1.4.5 connection pooling ----------------------------------------------------------


def test_reused_broker_instance():
    broker = qengine.get_broker()
    assert broker is qengine.get_broker()
    ids = [async_task("math.modf", 2.5, broker=broker) for _ in range(50)]
    assert all(result(i) == (0.5, 2.0) for i in ids)


# -- 1.4.6 Task reference ----------------------------------------------------------------


def test_task_fields_and_methods():
    task_id = async_task("tests.tasks.add", 1, b=2, group="sums")
    async_task("tests.tasks.fail", group="sums")
    task = fetch(task_id)
    assert (task.func, task.args, task.kwargs, task.result) == (
        "tests.tasks.add",
        (1,),
        {"b": 2},
        3,
    )
    assert task.started <= task.stopped
    assert task.started.tzinfo is not None
    assert task.time_taken() >= 0
    assert task.attempt_count == 1
    assert str(task) == task.name
    assert task["result"] == 3
    assert task.group_result() == [3]
    assert len(task.group_result(failures=True)) == 2
    assert task.group_count() == 2
    assert task.group_count(failures=True) == 1
    assert Task.get_result(task_id) == 3
    assert Task.get_result(task.name) == 3
    assert Task.get_result_group("sums") == [3]
    assert len(Task.get_task_group("sums")) == 2
    assert len(Task.get_task_group("sums", failures=False)) == 1
    assert Task.get_group_count("sums", failures=True) == 1
    assert qengine.Success.list(group="sums")[0].id == task_id
    assert qengine.Failure.list(group="sums")[0].success is False
    assert task.group_delete() == 2
    assert fetch(task_id).group is None
    assert Task.delete_group("nothing", objects=True) == 0


# -- 1.5 groups -----------------------------------------------------------------------------


def test_result_group_example():
    for i in range(4):
        async_task("math.modf", i, group="modf")
    assert result_group("modf", count=4) == [(0.0, 0.0), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]


def test_fetch_group_and_count_group_examples():
    for i in range(3):
        async_task("math.modf", i, group="modf")
    async_task("tests.tasks.fail", group="modf")
    failure_count = count_group("modf", failures=True)
    assert failure_count == 1
    everything = fetch_group("modf")
    assert len(everything) == 4
    successes = fetch_group("modf", failures=False)
    assert [t.result for t in successes] == result_group("modf")
    assert len(result_group("modf", failures=True)) == 4
    task = successes[0]
    if task.group_count() > 2:
        assert len(task.group_result()) == 3
        task.group_delete()
    assert count_group("modf") == 0


def test_delete_group_with_tasks_removes_them():
    ids = [async_task("math.floor", i, group="gone") for i in range(3)]
    assert delete_group("gone", tasks=True) == 3
    assert all(fetch(i) is None for i in ids)


def test_wait_with_count_gives_up_after_wait_ms():
    async_task("math.floor", 1, group="short")
    assert result_group("short", wait=30, count=5) == [1]


# -- 1.6 iterable -----------------------------------------------------------------------------


def test_async_iter_collates_results_in_order():
    args = list(range(100))
    iter_id = async_iter("math.floor", args)
    assert result(iter_id, wait=1000) == args
    collated = fetch(iter_id)
    assert collated.args == tuple(args)
    assert collated.success is True


def test_iter_class_example():
    i = Iter("math.copysign")
    i.append(1, -1)
    i.append(2, -1)
    assert i.append(3, -1) == 3
    i.run()
    assert i.result() == [-1.0, -2.0, -3.0]
    assert i.length() == 3
    assert i.fetch().result == [-1.0, -2.0, -3.0]


def test_cached_iter_keeps_the_collated_result_in_the_cache():
    qengine.configure(qengine.get_config(), cache="memory")
    iter_id = async_iter("math.floor", [1.5, 2.5], cached=True)
    assert result(iter_id) is None
    assert result(iter_id, cached=True) == [1, 2]


def test_async_iter_ignores_hook_and_handles_empty_iterables():
    iter_id = async_iter("math.floor", [1.5], hook="tests.tasks.record_hook")
    assert result(iter_id) == [1]
    assert tasks.HOOK_LOG == []
    assert result(async_iter("math.floor", [])) == []


# -- 1.7 chains --------------------------------------------------------------------------------


def test_async_chain_example():
    group_id = async_chain([("math.copysign", (1, -1)), ("math.floor", (1,))])
    assert result_group(group_id, count=2) == [-1.0, 1]


def test_chain_class_example():
    chain = Chain(cached=True)
    chain.append("math.copysign", 1, -1)
    chain.append("math.floor", 1)
    assert chain.current() is None
    chain.run()
    assert chain.result() == [-1.0, 1]
    assert chain.current() == chain.length() == 2
    assert [t.func for t in chain.fetch()] == ["math.copysign", "math.floor"]


def test_chain_links_take_options_and_a_failing_link_does_not_stop_it():
    chain = Chain()
    chain.append("tests.tasks.fail", hook="tests.tasks.record_hook")
    chain.append("math.floor", 2.5)
    group = chain.run()
    assert chain.current() == 2
    assert result_group(group, failures=True)[1] == 2
    assert len(tasks.HOOK_LOG) == 1


def test_malformed_chain_link_is_rejected_before_anything_runs():
    with pytest.raises(ValueError, match="chain link"):
        async_chain([("math.floor", (1,)), ()])
    with pytest.raises(ValueError, match="at least one"):
        async_chain([])


# -- hooks and signals --------------------------------------------------------------------------


def test_failing_hook_is_logged_and_the_result_kept(caplog):
    with caplog.at_level(logging.ERROR):
        task_id = async_task("math.floor", 1.5, hook="tests.tasks.failing_hook")
    assert result(task_id) == 1
    assert "hook tests.tasks.failing_hook" in caplog.text


def test_signals_are_sent_with_the_spec_arguments():
    seen = []

    def on_enqueue(sender, task, **kwargs):
        seen.append(("pre_enqueue", sender, task["name"]))

    def on_execute(sender, func, task, **kwargs):
        seen.append(("pre_execute", func, task.name))

    def on_done(sender, task, **kwargs):
        seen.append(("post_execute", task.result))

    pre_enqueue.connect(on_enqueue)
    pre_execute.connect(on_execute)
    post_execute.connect(on_done)
    try:
        async_task("math.floor", 4.5, task_name="signalled")
    finally:
        pre_enqueue.disconnect(on_enqueue)
        pre_execute.disconnect(on_execute)
        post_execute.disconnect(on_done)
    assert seen == [
        ("pre_enqueue", "qengine", "signalled"),
        ("pre_execute", math.floor, "signalled"),
        ("post_execute", 4),
    ]


# -- saving rules -------------------------------------------------------------------------------


def test_save_false_skips_successes_but_never_failures():
    ok = async_task("math.floor", 1.5, save=False)
    bad = async_task("tests.tasks.fail", save=False)
    assert fetch(ok) is None
    assert fetch(bad).success is False


def test_save_limit_minus_one_keeps_no_successes_unless_save_true():
    qengine.configure(qengine.get_config(), save_limit=-1)
    assert fetch(async_task("math.floor", 1.5)) is None
    assert fetch(async_task("math.floor", 1.5, save=True)).result == 1


def test_save_limit_keeps_the_newest_successes_and_every_failure():
    qengine.configure(qengine.get_config(), save_limit=3)
    ids = [async_task("math.floor", i) for i in range(6)]
    failures = [async_task("tests.tasks.fail") for _ in range(4)]
    assert [fetch(i) is not None for i in ids] == [False, False, False, True, True, True]
    assert all(fetch(i) is not None for i in failures)


def test_resubmit_queues_a_failure_again_and_removes_it():
    first = async_task("tests.tasks.fail", "once", group="again")
    new_id = qengine.resubmit(first)
    assert new_id != first
    assert fetch(first) is None
    assert fetch(new_id).group == "again"
    with pytest.raises(LookupError):
        qengine.resubmit("no-such-task")
