"""Actions from the monitor, each confirmed first: resubmit a failure; pause, resume, run
now and delete a schedule. Each test checks the store, not only the screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import qengine
from qengine import queries
from qengine.runtime import get_store
from qengine.schedules import Schedule
from tui.app import QMonitorApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.task_detail import TaskDetailScreen
from tui.widgets.schedule_table import ScheduleTable
from tui.widgets.task_table import TaskTable

from .conftest import monitor, notices, run, settle


def _schedule(name: str) -> Schedule:
    item = Schedule.get(name)
    assert item is not None
    return item


def test_resubmitting_a_failure_queues_it_and_removes_the_failure(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            app = pilot.app
            await pilot.press("3", "enter")
            await settle(pilot)
            assert isinstance(app.screen, TaskDetailScreen)
            await pilot.press("r")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await settle(pilot, snapshots=2)
            assert not isinstance(app.screen, (TaskDetailScreen, ConfirmScreen))
            failures = app.screen.query_one("#failures-table", TaskTable)
            assert [t.name for t in failures.tasks] == ["echo-broken"]
            assert any("Resubmitted as task" in text for text in notices(app))

    run(scenario)
    assert get_store().get("f" * 32) is None
    assert qengine.queue_size() == 1


def test_saying_no_resubmits_nothing(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("3", "enter")
            await settle(pilot)
            await pilot.press("r", "n")
            await pilot.pause()
            assert isinstance(pilot.app.screen, TaskDetailScreen)

    run(scenario)
    assert get_store().get("f" * 32) is not None
    assert qengine.queue_size() == 0


def test_the_resubmit_button_asks_too(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("3", "enter")
            await settle(pilot)
            await pilot.click("#resubmit")
            await pilot.pause()
            assert isinstance(pilot.app.screen, ConfirmScreen)
            await pilot.click("#yes")
            await settle(pilot, snapshots=2)

    run(scenario)
    assert get_store().get("f" * 32) is None


def test_pausing_and_resuming_a_schedule_keeps_its_repeats(fixed_schedules):
    every_five = _schedule("every-five")
    assert every_five.repeats == 7

    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "down", "p")
            assert isinstance(pilot.app.screen, ConfirmScreen)
            await pilot.press("y")
            await settle(pilot, snapshots=2)
            table = pilot.app.screen.query_one(ScheduleTable)
            assert table.current is not None
            assert table.current.name == "every-five"
            assert table.current.is_paused
            assert str(table.get_row_at(1)[4]) == "paused"
            assert _schedule("every-five").repeats == 0
            assert queries.paused_repeats(qengine.get_config(), every_five.id or 0) == 7

            await pilot.press("p", "y")
            await settle(pilot, snapshots=3)
            assert not table.schedules[1].is_paused

    run(scenario)
    assert _schedule("every-five").repeats == 7
    assert queries.paused_repeats(qengine.get_config(), every_five.id or 0) is None


def test_resuming_a_schedule_paused_elsewhere_makes_it_run_forever(fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "down", "down", "p", "y")
            await settle(pilot, snapshots=2)

    run(scenario)
    unnamed = Schedule.list(func="tests.tasks.echo")[0]
    assert unnamed.repeats == -1


def test_saying_no_leaves_the_schedule_alone(fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "p", "n", "d", "escape", "n", "n")
            await settle(pilot)

    run(scenario)
    item = _schedule("nightly-report")
    assert item.repeats == -1
    assert item.next_run == datetime(2025, 3, 15, 3, 0, tzinfo=UTC)


def test_run_now_makes_the_schedule_due(fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "n", "y")
            await settle(pilot, snapshots=2)

    before = datetime.now(UTC)
    run(scenario)
    next_run = _schedule("nightly-report").next_run
    assert next_run is not None
    assert before - timedelta(seconds=1) <= next_run <= datetime.now(UTC)


def test_run_now_refuses_a_paused_schedule(fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "down", "down", "n", "y")
            await settle(pilot, snapshots=2)
            assert isinstance(pilot.app, QMonitorApp)
            assert any("paused; resume it first" in text for text in notices(pilot.app))

    run(scenario)
    assert Schedule.list(func="tests.tasks.echo")[0].next_run == datetime(
        2025, 4, 1, 12, 0, tzinfo=UTC
    )


def test_deleting_a_schedule_removes_it(fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("4", "d", "y")
            await settle(pilot, snapshots=2)
            table = pilot.app.screen.query_one(ScheduleTable)
            assert [s.name for s in table.schedules] == ["every-five", None]

    run(scenario)
    assert Schedule.get("nightly-report") is None
