"""The qinfo figures: clusters, workers, restarts, successes, failures, schedules, rate, rejects."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ..formats import seconds
from ..model import SummaryInfo

__all__ = ["SummaryPanel"]

_UNITS = {"second": "s", "minute": "min", "hour": "h", "day": "day"}


class SummaryPanel(Static):
    """The figures ``qinfo`` prints, laid out to fit beside the queue at 80 columns."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Reading…", id=id, markup=False)
        self.summary: SummaryInfo | None = None

    def on_mount(self) -> None:
        self.border_title = "Summary"

    def show_summary(self, summary: SummaryInfo) -> None:
        self.summary = summary
        self.border_title = f"Summary of {summary.name}"

        def cell(label: str, value: object) -> str:
            # 16 wide: the value right-aligned after the label, however long the label.
            return f"{label} {value!s:>{15 - len(label)}}"

        rows = [
            (("Clusters", summary.clusters), ("Workers", summary.workers),
             ("Restarts", summary.restarts)),
            (("Successes", summary.successes), ("Failures", summary.failures),
             ("Schedules", summary.schedules)),
            ((f"Tasks/{_UNITS.get(summary.rate_unit, summary.rate_unit)}", f"{summary.rate:.2f}"),
             ("Avg time", seconds(summary.avg_time)), ("Queued", summary.queued)),
            (("Rejected", summary.rejected), ("Redelivered", summary.redeliveries)),
        ]  # fmt: skip
        self.update("\n".join("  ".join(cell(*pair) for pair in row) for row in rows))
