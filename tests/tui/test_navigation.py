"""Driving the monitor with keys: tabs, task lists and filters, a task's detail, quitting."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static, TabbedContent

from tui.screens.task_detail import TaskDetailScreen
from tui.widgets.task_table import TaskTable

from .conftest import TRACEBACK, monitor, run, settle


def test_number_keys_switch_tabs_and_focus_their_list(fixed_tasks, fixed_schedules):
    async def scenario() -> None:
        async with monitor() as pilot:
            tabs = pilot.app.screen.query_one(TabbedContent)
            assert tabs.active == "overview"
            for key, tab in [
                ("2", "tasks"),
                ("3", "failures"),
                ("4", "schedules"),
                ("1", "overview"),
            ]:
                await pilot.press(key)
                await pilot.pause()
                assert tabs.active == tab
                focused = pilot.app.focused
                assert isinstance(focused, DataTable)
                assert tabs.active_pane is not None
                assert focused in tabs.active_pane.query(DataTable)

    run(scenario)


def test_q_quits():
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("q")
            await pilot.pause()
            assert pilot.app.return_code == 0

    run(scenario)


def test_task_lists_are_newest_first_and_failures_only_hold_failures(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            tasks = pilot.app.screen.query_one("#tasks-table", TaskTable)
            failures = pilot.app.screen.query_one("#failures-table", TaskTable)
            assert tasks.row_count == 14
            stopped = [t.stopped for t in tasks.tasks]
            assert stopped == sorted(stopped, reverse=True)
            assert [t.name for t in failures.tasks] == ["report-broken", "echo-broken"]
            tabs = pilot.app.screen.query_one(TabbedContent)
            assert str(tabs.get_tab("failures").label) == "3 Failures (2)"

    run(scenario)


def test_filters_narrow_a_list_by_group_and_by_func(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("2")
            table = pilot.app.screen.query_one("#tasks-table", TaskTable)
            group = pilot.app.screen.query_one("#tasks-filters #filter-group", Input)
            group.focus()
            await pilot.press(*"rep")
            await settle(pilot, snapshots=2)
            assert [t.name for t in table.tasks] == ["report-broken"]

            await pilot.press("ctrl+u")  # clear the group filter
            func = pilot.app.screen.query_one("#tasks-filters #filter-func", Input)
            func.focus()
            await pilot.press(*"tests.tasks.e")
            await settle(pilot, snapshots=3)
            assert [t.name for t in table.tasks] == ["echo-broken"]

            # The failures list keeps its own (empty) filter.
            failures = pilot.app.screen.query_one("#failures-table", TaskTable)
            assert len(failures.tasks) == 2

    run(scenario)


def test_typing_a_filter_does_not_trigger_keys(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("2")
            group = pilot.app.screen.query_one("#tasks-filters #filter-group", Input)
            group.focus()
            await pilot.press(*"q1")
            await settle(pilot)
            assert group.value == "q1"
            assert pilot.app.return_code is None
            assert pilot.app.screen.query_one(TabbedContent).active == "tasks"

    run(scenario)


def test_enter_opens_a_failure_with_its_arguments_traceback_and_attempts(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("3", "enter")
            await settle(pilot)
            screen = pilot.app.screen
            assert isinstance(screen, TaskDetailScreen)
            assert screen.info.id == "f" * 32

            def text(selector: str) -> str:
                return str(screen.query_one(selector, Static).content)

            assert text("#args") == "('disk full',)"
            assert text("#kwargs") == "{'retry': False}"
            assert text("#result") == TRACEBACK
            facts = text("#facts")
            assert "Attempts  3" in facts
            assert "Time      1.500s" in facts
            assert "Group     reports" in facts
            assert screen.query("#resubmit")

            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(pilot.app.screen, TaskDetailScreen)

    run(scenario)


def test_a_success_shows_its_result_and_offers_no_resubmit(fixed_tasks):
    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("2", "enter")
            await settle(pilot)
            screen = pilot.app.screen
            assert isinstance(screen, TaskDetailScreen)
            assert screen.info.name == "add-00"
            assert str(screen.query_one("#result", Static).content) == "2"
            assert not screen.query("#resubmit")
            await pilot.press("r")  # no confirmation appears for a success
            await pilot.pause()
            assert pilot.app.screen is screen

    run(scenario)


def test_markup_in_names_is_shown_as_written():
    from .conftest import save_task

    save_task("a" * 32, "[bold]not bold[/]", group="[red]")

    async def scenario() -> None:
        async with monitor() as pilot:
            table = pilot.app.screen.query_one("#tasks-table", TaskTable)
            row = table.get_row_at(0)
            assert str(row[2]) == "[bold]not bold[/]"
            assert str(row[4]) == "[red]"

    run(scenario)


def test_works_at_80x24_and_larger(fixed_tasks, fixed_schedules):
    async def scenario(size: tuple[int, int]) -> None:
        async with monitor(size=size) as pilot:
            for key in "12341":
                await pilot.press(key)
                await pilot.pause()
            screen = pilot.app.screen.region
            for part in ["#clusters", "#summary", "#queue", "#rate"]:
                region = pilot.app.screen.query_one(part).region
                assert region.height >= 2, part
                assert screen.contains_region(region), part

    for size in [(80, 24), (160, 50)]:
        run(lambda size=size: scenario(size))


def test_s_saves_a_screenshot_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def scenario() -> None:
        async with monitor() as pilot:
            await pilot.press("s")
            await pilot.pause()

    run(scenario)
    (shot,) = tmp_path.glob("*.svg")
    assert "qmonitor" in shot.read_text(encoding="utf-8")
