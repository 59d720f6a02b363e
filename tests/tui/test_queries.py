"""qengine.queries: the read helpers the monitor needs (rates, listings, schedules)."""

from __future__ import annotations

import sys
import types
from datetime import timedelta

import pytest

import qengine
from qengine import queries
from qengine.errors import StoreError

from .conftest import NOW, save_task


def config():
    return qengine.get_config()


def test_tasks_per_second_counts_each_slice_of_the_window():
    for seconds_ago in [5, 6, 7, 65, 119, 121, 700]:
        save_task(
            f"{seconds_ago:032d}", f"t{seconds_ago}", stopped=NOW - timedelta(seconds=seconds_ago)
        )
    rate = queries.tasks_per_second(config(), minutes=10, buckets=10, now=NOW)
    assert len(rate) == 10
    # Oldest slice first: 540-600 s ago holds nothing (700 s is outside), the newest holds 3.
    assert rate[-1] == pytest.approx(3 / 60)
    assert rate[-2] == pytest.approx(2 / 60)  # 65 and 119 s ago
    assert rate[-3] == pytest.approx(1 / 60)  # 121 s ago
    assert sum(rate) * 60 == pytest.approx(6)


def test_tasks_per_second_on_an_empty_store_is_all_zeros():
    assert queries.tasks_per_second(config(), minutes=1, buckets=6, now=NOW) == [0.0] * 6


def test_tasks_per_second_refuses_an_empty_window():
    with pytest.raises(ValueError, match="buckets"):
        queries.tasks_per_second(config(), buckets=0)


def test_task_listing_filters_by_outcome_and_prefix_and_reads_no_values():
    save_task("1" * 32, "a", group="reports_2025", func="app.reports.build")
    save_task("2" * 32, "b", group="reports", func="app.mail.send", success=False, result="tb")
    save_task("3" * 32, "c", group="reportsX2025", stopped=NOW - timedelta(seconds=1))
    listed = queries.task_listing(config(), group="reports")
    assert [t.name for t in listed] == ["a", "b", "c"]
    assert all(t.result is None and t.args is None for t in listed)
    # "_" is a LIKE wildcard: a group filter must match it only literally.
    assert [t.name for t in queries.task_listing(config(), group="reports_")] == ["a"]
    assert [t.name for t in queries.task_listing(config(), func="app.mail")] == ["b"]
    assert [t.name for t in queries.task_listing(config(), success=False)] == ["b"]
    assert len(queries.task_listing(config(), limit=2)) == 2


def test_task_detail_reads_each_value_and_survives_one_it_cannot_unpickle(monkeypatch):
    module = types.ModuleType("vanishing_results")

    class Report:
        pass

    Report.__module__ = module.__name__
    Report.__qualname__ = "Report"
    module.Report = Report  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    save_task("9" * 32, "odd", args=(1,), kwargs={"k": "v"}, result=Report())
    monkeypatch.delitem(sys.modules, module.__name__)  # the monitor's process lacks it

    task = queries.task_detail(config(), "9" * 32)
    assert task is not None
    assert task.args == (1,)
    assert task.kwargs == {"k": "v"}
    assert isinstance(task.result, queries.Unreadable)
    assert "vanishing_results" in repr(task.result)
    assert task.time_taken() == pytest.approx(0.25)
    assert queries.task_detail(config(), "nope") is None


def test_schedule_statuses_join_the_last_task(fixed_tasks, fixed_schedules):
    statuses = queries.schedule_statuses(config())
    assert [s.name for s in statuses] == ["nightly-report", "every-five", None]
    nightly, every_five, unnamed = statuses
    assert nightly.type_label == "Cron"
    assert nightly.cron == "0 3 * * *"
    assert nightly.last_task == "f" * 32
    assert nightly.last_success is False
    assert nightly.last_stopped == NOW - timedelta(seconds=90)
    assert every_five.minutes == 5
    assert every_five.repeats == 7
    assert every_five.last_success is None
    assert unnamed.repeats == 0


def test_task_labels_list_groups_and_funcs(fixed_tasks):
    groups, funcs = queries.task_labels(config())
    assert groups == ["adds", "reports"]
    assert funcs == ["tests.tasks.add", "tests.tasks.echo", "tests.tasks.fail"]


def test_the_paused_repeats_note_is_kept_replaced_and_forgotten():
    assert queries.paused_repeats(config(), 3) is None
    queries.keep_paused_repeats(config(), 3, 5)
    queries.keep_paused_repeats(config(), 3, 4)
    assert queries.paused_repeats(config(), 3) == 4
    assert queries.paused_repeats(config(), 4) is None
    queries.forget_paused_repeats(config(), 3)
    assert queries.paused_repeats(config(), 3) is None


def test_an_unreachable_store_raises_store_error_without_the_password():
    dead = qengine.configure(store="postgresql+psycopg://me:secret@127.0.0.1:1/none")
    with pytest.raises(StoreError) as caught:
        queries.schedule_statuses(dead)
    assert "secret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])  # fmt: skip
def any_store(request):
    """The configured store on each database the engine supports."""
    if request.param != "sqlite":
        qengine.configure(
            store=request.getfixturevalue(f"{request.param}_url"), secret_key="k" * 32
        )
    return request.param


@pytest.mark.usefixtures("any_store")
def test_the_queries_agree_on_every_database(fixed_tasks, fixed_schedules):
    rate = queries.tasks_per_second(config(), minutes=10, buckets=10, now=NOW)
    assert sum(rate) * 60 == pytest.approx(14)
    assert [t.name for t in queries.task_listing(config(), group="rep")] == ["report-broken"]
    detail = queries.task_detail(config(), "f" * 32)
    assert detail is not None
    assert detail.kwargs == {"retry": False}
    statuses = queries.schedule_statuses(config())
    assert [s.last_success for s in statuses] == [False, None, None]
    queries.keep_paused_repeats(config(), 1, 3)
    assert queries.paused_repeats(config(), 1) == 3
    queries.forget_paused_repeats(config(), 1)
