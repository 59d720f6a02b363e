"""The main screen: clusters with the summary, queue and rate; tasks; failures; schedules."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane

from ..model import Snapshot
from ..widgets.banner import Banner
from ..widgets.clusters_table import ClustersTable
from ..widgets.queue_panel import QueuePanel
from ..widgets.rate_panel import RatePanel
from ..widgets.schedule_table import ScheduleTable
from ..widgets.summary_panel import SummaryPanel
from ..widgets.task_filters import TaskFilters
from ..widgets.task_table import TaskTable

__all__ = ["TABS", "MonitorScreen"]

TABS = {"overview": "Clusters", "tasks": "Tasks", "failures": "Failures", "schedules": "Schedules"}
"""Tab ids and labels, in order; the keys 1 to 4 switch to them."""


class MonitorScreen(Screen[None]):
    """Lays out what a snapshot holds; reads nothing itself (the app polls the source)."""

    CSS_PATH = "monitor.tcss"

    class Ready(Message):
        """The screen's widgets exist: snapshots can be shown from now on."""

    BINDINGS = [
        Binding(str(number), f"show_tab('{tab}')", label, show=False)
        for number, (tab, label) in enumerate(TABS.items(), start=1)
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner(id="banner")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane(self._label("overview"), id="overview"):
                yield ClustersTable(id="clusters")
                with Horizontal(id="figures"):
                    yield SummaryPanel(id="summary")
                    yield QueuePanel(id="queue")
                yield RatePanel(id="rate")
            with TabPane(self._label("tasks"), id="tasks"):
                yield TaskFilters(id="tasks-filters")
                yield TaskTable(id="tasks-table")
            with TabPane(self._label("failures"), id="failures"):
                yield TaskFilters(id="failures-filters")
                yield TaskTable(id="failures-table")
            with TabPane(self._label("schedules"), id="schedules"):
                yield ScheduleTable(id="schedules-table")
        yield Footer()

    @staticmethod
    def _label(tab: str, count: int | None = None) -> str:
        number = list(TABS).index(tab) + 1
        suffix = "" if count is None else f" ({count})"
        return f"{number} {TABS[tab]}{suffix}"

    def on_mount(self) -> None:
        self.query_one(ClustersTable).focus()
        self.post_message(self.Ready())

    # -- what the app calls ------------------------------------------------------------

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Show every part the snapshot has; the parts it lacks keep what they showed."""
        if snapshot.clusters is not None:
            self.query_one(ClustersTable).show_clusters(snapshot.clusters)
        if snapshot.queue is not None:
            self.query_one(QueuePanel).show_queue(snapshot.queue)
        if snapshot.summary is not None:
            self.query_one(SummaryPanel).show_summary(snapshot.summary)
            tabs = self.query_one(TabbedContent)
            tabs.get_tab("failures").label = self._label("failures", snapshot.summary.failures)
            tabs.get_tab("schedules").label = self._label("schedules", snapshot.summary.schedules)
        if snapshot.rate is not None:
            self.query_one(RatePanel).show_rate(snapshot.rate, snapshot.rate_window_s)
        if snapshot.tasks is not None:
            self.query_one("#tasks-table", TaskTable).show_tasks(snapshot.tasks)
        if snapshot.failures is not None:
            self.query_one("#failures-table", TaskTable).show_tasks(snapshot.failures)
        if snapshot.schedules is not None:
            self.query_one(ScheduleTable).show_schedules(snapshot.schedules)
        if snapshot.groups is not None and snapshot.funcs is not None:
            for filters in self.query(TaskFilters):
                filters.offer(snapshot.groups, snapshot.funcs)

    def show_problems(self, problems: dict[str, str]) -> None:
        self.query_one(Banner).show_problems(problems)

    # -- navigation --------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # The list of the new tab takes the keys, so its bindings show in the footer at once.
        event.pane.query(DataTable).first().focus()
