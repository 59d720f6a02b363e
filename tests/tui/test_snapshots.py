"""Snapshots of the main screens at 80x24, on fixed data with a frozen clock.

Update them with ``pytest tests/tui --snapshot-update`` after a deliberate
change of layout, and look at the report before committing.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tui.app import QMonitorApp

from .conftest import FixedSource, settle

pytestmark = pytest.mark.usefixtures("fixed_tasks", "fixed_schedules", "fixed_clusters", "queued")


def app() -> QMonitorApp:
    return QMonitorApp(FixedSource(), poll_s=3600)


async def shown(pilot: Pilot[None]) -> None:
    await settle(pilot)


def test_clusters_summary_queue_and_rate(snap_compare):
    assert snap_compare(app(), run_before=shown)


def test_clusters_screen_larger_terminal(snap_compare):
    assert snap_compare(app(), run_before=shown, terminal_size=(120, 36))


def test_tasks_newest_first(snap_compare):
    assert snap_compare(app(), run_before=shown, press=["2"])


def test_failures(snap_compare):
    assert snap_compare(app(), run_before=shown, press=["3"])


def test_failure_detail_with_traceback(snap_compare):
    async def opened(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("3", "enter")
        await settle(pilot)

    assert snap_compare(app(), run_before=opened)


def test_schedules(snap_compare):
    assert snap_compare(app(), run_before=shown, press=["4"])


def test_pause_confirmation(snap_compare):
    assert snap_compare(app(), run_before=shown, press=["4", "p"])
