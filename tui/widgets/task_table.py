"""A list of stored tasks, newest first; Enter opens one."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..formats import cell, moment, outcome, seconds
from ..model import TaskLine

__all__ = ["TaskTable"]


class TaskTable(DataTable[Text]):
    """Tasks as the source lists them; rebuilt only when they changed, cursor kept."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    BINDINGS = [Binding("enter", "select_cursor", "Details")]

    COLUMNS = (("", "ok"), ("Finished", "stopped"), ("Name", "name"), ("Func", "func"),
               ("Group", "group"), ("Time", "time"), ("Att", "attempts"))  # fmt: skip

    class Open(Message):
        """The user asked for a task's detail."""

        def __init__(self, table: TaskTable, task_id: str) -> None:
            super().__init__()
            self.table = table
            self.task_id = task_id

        @property
        def control(self) -> TaskTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tasks: list[TaskLine] = []

    def on_mount(self) -> None:
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def show_tasks(self, tasks: list[TaskLine]) -> None:
        """Show ``tasks``; the cursor stays on the task it was on, if still listed."""
        if tasks == self.tasks and self.row_count == len(tasks):
            return
        keep = self.tasks[self.cursor_row].id if 0 <= self.cursor_row < len(self.tasks) else None
        self.tasks = list(tasks)
        self.clear()
        for task in tasks:
            self.add_row(
                outcome(task.success),
                cell(moment(task.stopped)),
                cell(task.name, 28),
                cell(task.func, 28),
                cell(task.group, 16),
                Text(seconds(task.time_taken_s), justify="right"),
                Text(str(task.attempts), justify="right"),
                key=task.id,
            )
        ids = [task.id for task in tasks]
        if keep in ids:
            self.move_cursor(row=ids.index(keep), animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Open(self, event.row_key.value))
