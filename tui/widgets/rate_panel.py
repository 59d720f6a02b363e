"""A sparkline of the tasks finished per second over the last minutes."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

__all__ = ["RatePanel"]


class RatePanel(Vertical):
    """The recent task rate, from the finish times of stored tasks."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rate: list[float] = []

    def on_mount(self) -> None:
        self.border_title = "Tasks per second"

    def compose(self) -> ComposeResult:
        yield Label("Reading…", id="rate-caption", markup=False)
        yield Sparkline([], summary_function=max, id="rate-sparkline")

    def show_rate(self, rate: list[float], window_s: float) -> None:
        """Show ``rate`` (tasks/s per slice, oldest first) over the last ``window_s`` seconds."""
        self.rate = list(rate)
        minutes = round(window_s / 60)
        now = rate[-1] if rate else 0.0
        peak = max(rate, default=0.0)
        average = sum(rate) / len(rate) if rate else 0.0
        self.border_title = f"Tasks per second, last {minutes} min"
        self.query_one("#rate-caption", Label).update(
            f"now {now:.2f}   peak {peak:.2f}   average {average:.2f}"
        )
        self.query_one(Sparkline).data = self.rate
