"""The schedules: next run, type, repeats and last result; pause, resume, run now, delete."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..formats import cell, outcome
from ..model import ScheduleInfo

__all__ = ["ScheduleTable"]


class ScheduleTable(DataTable[Text]):
    """Every stored schedule; its keys ask for an action, which the app confirms first."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    BINDINGS = [
        Binding("p", "request('toggle')", "Pause/resume"),
        Binding("n", "request('run_now')", "Run now"),
        Binding("d", "request('delete')", "Delete"),
    ]

    COLUMNS = (("", "last"), ("Schedule", "name"), ("Func", "func"), ("Type", "type"),
               ("Repeats", "repeats"), ("Next run", "next_run"))  # fmt: skip
    """The first column is the last run's outcome, as in the task lists."""

    class Action(Message):
        """The user asked for ``action`` (toggle, run_now or delete) on ``schedule``."""

        def __init__(self, table: ScheduleTable, action: str, schedule: ScheduleInfo) -> None:
            super().__init__()
            self.table = table
            self.action = action
            self.schedule = schedule

        @property
        def control(self) -> ScheduleTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.schedules: list[ScheduleInfo] = []

    def on_mount(self) -> None:
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    @property
    def current(self) -> ScheduleInfo | None:
        """The schedule under the cursor."""
        if 0 <= self.cursor_row < len(self.schedules):
            return self.schedules[self.cursor_row]
        return None

    def show_schedules(self, schedules: list[ScheduleInfo]) -> None:
        """Show ``schedules``; the cursor stays on the schedule it was on, if still there."""
        if schedules == self.schedules and self.row_count == len(schedules):
            return
        keep = self.current.id if self.current else None
        self.schedules = list(schedules)
        self.clear()
        for item in schedules:
            self.add_row(*self._cells(item), key=str(item.id))
        ids = [item.id for item in schedules]
        if keep in ids:
            self.move_cursor(row=ids.index(keep), animate=False)

    @staticmethod
    def _cells(item: ScheduleInfo) -> list[Text]:
        # Sized to fit 80 columns: an unnamed schedule shows as its id (#3).
        kind = item.type_label.lower()
        if item.every:  # "every 5 min" or "cron 0 3 * * *"
            kind = f"{'every' if kind == 'minutes' else kind} {item.every}"
        if item.is_paused:
            repeats = Text("paused", style="bold yellow")
        else:
            repeats = Text("forever" if item.repeats < 0 else str(item.repeats), justify="right")
        next_run = "-" if item.next_run is None else item.next_run.strftime("%m-%d %H:%M")
        return [
            outcome(item.last_success),
            cell(item.label, 16),
            cell(item.func, 18),
            cell(kind, 14),
            repeats,
            cell(next_run),
        ]

    def action_request(self, action: str) -> None:
        if self.current is not None:
            self.post_message(self.Action(self, action, self.current))
