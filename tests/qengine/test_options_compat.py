"""Which keywords of ``async_task`` are options: Django Q's rule, and ``on_commit`` without Django.

Django Q 1.3.6 and django-q2 take an option keyword as an option even
beside ``q_options``, unless ``q_options`` has the same key; ``task_name``
as a keyword is always an option. Code moved from them must mean the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import qengine
from qengine import AsyncTask, Iter, async_task, fetch, queue_size, result
from qengine.api import split_options
from qengine.errors import ConfigError, ScheduleError
from qengine.schedules import Schedule
from qengine.transactions import set_commit_hook
from tests import tasks

ECHO = "tests.tasks.echo"
HOOK = "tests.tasks.record_hook"


@pytest.fixture
def sync_mode() -> None:
    qengine.configure(qengine.get_config(), sync=True)


@pytest.fixture(autouse=True)
def plain_python() -> Iterator[None]:
    """No commit hook, as in a process without Django; whatever was there is put back."""
    tasks.HOOK_LOG.clear()
    previous = set_commit_hook(None)
    yield
    set_commit_hook(previous)


# -- the keyword rule ---------------------------------------------------------------------


def test_an_option_beside_q_options_is_still_an_option(sync_mode) -> None:
    task_id = async_task(ECHO, 1, q_options={"group": "g"}, hook=HOOK)
    assert result(task_id) == ((1,), {})
    assert [t.id for t in tasks.HOOK_LOG] == [task_id]
    assert fetch(task_id).group == "g"


def test_a_key_in_q_options_sends_the_same_keyword_to_the_function(sync_mode) -> None:
    task_id = async_task(ECHO, 1, q_options={"group": "g", "hook": HOOK}, group="mine")
    assert result(task_id) == ((1,), {"group": "mine"})
    assert fetch(task_id).group == "g"
    assert len(tasks.HOOK_LOG) == 1


def test_an_empty_q_options_leaves_every_option_keyword_an_option(sync_mode) -> None:
    task_id = async_task(ECHO, 1, hook=HOOK, group="g", q_options={})
    assert result(task_id) == ((1,), {})
    assert fetch(task_id).group == "g"


def test_task_name_as_a_keyword_is_always_an_option(sync_mode) -> None:
    task_id = async_task(ECHO, q_options={"group": "g"}, task_name="named-alone")
    assert fetch("named-alone").id == task_id
    assert result(task_id) == ((), {})
    # Even beside a task_name in q_options, and then the keyword's wins, as in Django Q.
    task_id = async_task(ECHO, q_options={"task_name": "from-options"}, task_name="keyword")
    assert fetch(task_id).name == "keyword"
    assert result(task_id) == ((), {})


def test_sync_beside_q_options_runs_the_task_inline() -> None:
    assert qengine.get_config().sync is False
    task_id = async_task(ECHO, 2, q_options={"hook": HOOK}, sync=True)
    assert result(task_id) == ((2,), {})
    assert queue_size() == 0
    assert len(tasks.HOOK_LOG) == 1


def test_without_q_options_option_keywords_are_options_as_before() -> None:
    options, kwargs = split_options({"hook": HOOK, "timeout": 5, "x": 1})
    assert (options, kwargs) == ({"hook": HOOK, "timeout": 5}, {"x": 1})


def test_split_options_by_the_rule() -> None:
    options, kwargs = split_options(
        {"q_options": {"timeout": 9, "task_name": "opt"}, "timeout": 1, "save": False, "y": 2}
    )
    assert options == {"timeout": 9, "save": False, "task_name": "opt"}
    assert kwargs == {"timeout": 1, "y": 2}


def test_async_task_properties_read_what_run_will_use(sync_mode) -> None:
    task = AsyncTask(ECHO, 3, q_options={"group": "g"}, cached=True)
    assert (task.group, task.cached) == ("g", True)
    task.cached = False  # stays a keyword, so still an option
    task.group = "h"
    assert task.kwargs == {"q_options": {"group": "h"}, "cached": False}
    assert result(task.run()) == ((3,), {})
    assert fetch(task.id).group == "h"


def test_iter_keyword_arguments_all_go_to_the_function(sync_mode) -> None:
    i = Iter(ECHO, kwargs={"timeout": 5, "task_name": "arg"})
    i.append(1)
    assert result(i.run()) == [((1,), {"timeout": 5, "task_name": "arg"})]


# -- on_commit without a framework ----------------------------------------------------------


def test_on_commit_without_django_is_a_config_error_and_queues_nothing() -> None:
    with pytest.raises(ConfigError, match=r"on_commit=True needs .*Django"):
        async_task("math.floor", 1.5, on_commit=True)
    with pytest.raises(ConfigError, match=r"on_commit='other'"):
        async_task("math.floor", 1.5, q_options={"on_commit": "other"})
    assert queue_size() == 0
    # Off is off, with or without a framework.
    async_task("math.floor", 1.5, on_commit=False)
    assert queue_size() == 1


def test_on_commit_is_checked_like_the_other_options() -> None:
    with pytest.raises(ValueError, match="on_commit=3 is invalid"):
        async_task("math.floor", 1.5, on_commit=3)


def test_a_registered_commit_hook_holds_the_enqueue_until_it_runs_the_callback() -> None:
    held: list[tuple[Callable[[], None], str | None]] = []
    set_commit_hook(lambda callback, using: held.append((callback, using)))
    async_task("math.floor", 1.5, on_commit=True)
    async_task("math.floor", 2.5, q_options={"on_commit": "reports"})
    assert [using for _, using in held] == [None, "reports"]
    assert queue_size() == 0
    held[0][0]()
    assert queue_size() == 1


def test_the_id_is_handed_out_at_once_and_a_sync_run_waits_for_the_commit() -> None:
    held: list[Callable[[], None]] = []
    set_commit_hook(lambda callback, using: held.append(callback))
    task_id = async_task("math.floor", 1.5, on_commit=True, sync=True)
    assert fetch(task_id) is None
    (callback,) = held
    callback()
    assert fetch(task_id).result == 1


def test_a_wrong_call_with_on_commit_fails_at_the_call_not_at_the_commit() -> None:
    set_commit_hook(lambda callback, using: pytest.fail("a wrong call must not be held"))
    with pytest.raises(TypeError, match="func must be"):
        async_task(42, on_commit=True)
    with pytest.raises(ValueError, match="timeout"):
        async_task("math.floor", 1.5, on_commit=True, timeout=-1)


def test_a_schedule_cannot_wait_for_a_commit() -> None:
    with pytest.raises(ScheduleError, match="'on_commit'"):
        Schedule(func="math.floor", args=(1.5,), q_options={"on_commit": True}).save()
