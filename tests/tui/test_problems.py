"""An unreachable broker or store shows a banner and never ends the monitor; it recovers."""

from __future__ import annotations

import threading
import time

import pytest
from textual.widgets import TabbedContent

import qengine
from qengine.errors import BrokerUnavailable
from tui.model import PollRequest, Snapshot
from tui.source import Source
from tui.widgets.banner import Banner
from tui.widgets.task_table import TaskTable

from .conftest import monitor, run, settle

DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def banner_text(pilot) -> str:
    banner = pilot.app.screen.query_one(Banner)
    return str(banner.content) if banner.has_class("-shown") else ""


def test_an_unreachable_redis_broker_shows_a_banner_and_the_store_still_shows(
    tmp_path, fixed_tasks
):
    store = qengine.get_config().store
    qengine.configure(store=store, broker=DEAD_REDIS, secret_key="k" * 32)

    async def scenario() -> None:
        async with monitor() as pilot:
            text = banner_text(pilot)
            assert "Broker unreachable" in text
            assert "Result store" not in text
            assert pilot.app.screen.query_one("#tasks-table", TaskTable).row_count == 14
            for key in "2341":  # every tab still answers
                await pilot.press(key)
            assert pilot.app.screen.query_one(TabbedContent).active == "overview"

    run(scenario)


def test_an_unreachable_database_shows_both_parts_and_keys_still_work():
    qengine.configure(store=DEAD_POSTGRES, secret_key="k" * 32)

    async def scenario() -> None:
        async with monitor() as pilot:
            text = banner_text(pilot)
            assert "Broker unreachable" in text
            assert "Result store unreachable" in text
            await pilot.press("3", "enter", "4", "p", "r")
            await settle(pilot, snapshots=2)
            assert "Result store unreachable" in banner_text(pilot)

    run(scenario)


class Flaky(Source):
    """The broker fails until ``healed`` is set, as one that restarts would."""

    healed = False

    def queue(self):  # type: ignore[override]
        if not self.healed:
            raise BrokerUnavailable("Redis at redis://localhost:6379/0 cannot be reached")
        return super().queue()


def test_the_banner_goes_once_the_broker_answers_again():
    source = Flaky()

    async def scenario() -> None:
        async with monitor(source) as pilot:
            assert "Broker unreachable: Redis at redis://localhost:6379/0" in banner_text(pilot)
            # A poll that does not read the broker leaves the problem standing.
            pilot.app.poll(full=False)
            await settle(pilot, snapshots=2)
            assert "Broker unreachable" in banner_text(pilot)
            source.healed = True
            pilot.app.poll(full=False)
            await settle(pilot, snapshots=3)
            assert banner_text(pilot) == ""

    run(scenario)


class Stuck(Source):
    """Polls that hang once ``stuck`` is set, as one waiting on a dead host's TCP timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck = False
        self.release = threading.Event()
        self.stuck_calls = 0

    def poll(self, request: PollRequest) -> Snapshot:
        if self.stuck:
            self.stuck_calls += 1
            self.release.wait(10)
        return super().poll(request)


def test_a_hanging_poll_is_reported_and_not_doubled():
    source = Stuck()

    async def scenario() -> None:
        async with monitor(source, poll_s=0.05) as pilot:
            pilot.app.stall_s = 0.2
            source.stuck = True
            for _ in range(100):
                await pilot.pause(0.05)
                if "no answer" in banner_text(pilot):
                    break
            assert "Broker or result store unreachable: no answer for" in banner_text(pilot)
            assert source.stuck_calls == 1  # ticks meanwhile were folded, not stacked
            await pilot.press("2")  # the keys still work while the poll hangs
            assert pilot.app.screen.query_one(TabbedContent).active == "tasks"
            source.stuck = False
            source.release.set()
            before = pilot.app.snapshots
            await settle(pilot, snapshots=before + 1)
            assert "no answer" not in banner_text(pilot)

    run(scenario)


def test_quitting_does_not_wait_for_a_hanging_poll():
    source = Stuck()

    async def scenario() -> None:
        async with monitor(source) as pilot:
            source.stuck = True
            pilot.app.poll(full=True)
            await pilot.pause()
            await pilot.press("q")

    started = time.monotonic()
    run(scenario)
    assert time.monotonic() - started < 5
    source.release.set()


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("oops")])
def test_an_error_inside_a_poll_is_shown_not_raised(monkeypatch, error):
    def broken(self, request):
        raise error

    async def scenario() -> None:
        async with monitor() as pilot:
            monkeypatch.setattr(Source, "poll", broken)
            pilot.app.poll(full=True)
            await settle(pilot)
            assert "Monitor error: " in banner_text(pilot)
            assert pilot.app.return_code is None
            monkeypatch.undo()  # the next poll works and takes the banner away
            pilot.app.poll(full=True)
            await settle(pilot, snapshots=2)
            assert banner_text(pilot) == ""

    run(scenario)
