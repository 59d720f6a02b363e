"""The group and function filters above a task list."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input

from ..model import TaskFilter

__all__ = ["TaskFilters"]


class TaskFilters(Horizontal):
    """Two inputs, group and function; a list shows the tasks whose values start with them.

    Known groups and functions are offered as completions (→ accepts one).
    """

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    class Changed(Message):
        """The filter of one list changed."""

        def __init__(self, filters: TaskFilters, value: TaskFilter) -> None:
            super().__init__()
            self.filters = filters
            self.value = value

        @property
        def control(self) -> TaskFilters:
            return self.filters

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.value = TaskFilter()
        self._known: tuple[list[str], list[str]] = ([], [])

    def compose(self) -> ComposeResult:
        yield Input(placeholder="group starts with…", id="filter-group")
        yield Input(placeholder="func starts with…", id="filter-func")

    def offer(self, groups: list[str], funcs: list[str]) -> None:
        """Offer these groups and functions as completions."""
        if (groups, funcs) == self._known:
            return
        self._known = (list(groups), list(funcs))
        self.query_one("#filter-group", Input).suggester = SuggestFromList(groups)
        self.query_one("#filter-func", Input).suggester = SuggestFromList(funcs)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        group = self.query_one("#filter-group", Input).value.strip() or None
        func = self.query_one("#filter-func", Input).value.strip() or None
        value = TaskFilter(group=group, func=func)
        if value != self.value:
            self.value = value
            self.post_message(self.Changed(self, value))
