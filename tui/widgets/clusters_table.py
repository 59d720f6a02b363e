"""The spec's cluster table: Host, Id, State, Pool, TQ, RQ, RC, Up, then Rej and Redel; totals."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable

from ..formats import cell, uptime
from ..model import ClusterInfo

__all__ = ["STATE_STYLES", "ClustersTable"]

STATE_STYLES = {
    "Starting": "bold yellow",
    "Idle": "bold cyan",
    "Working": "bold green",
    "Stopping": "bold dark_orange",
    "Stopped": "bold red",
}
"""Colour of each cluster state, so a stopping or stopped cluster stands out."""

FULL_STYLE = "bold black on green"
"""TQ at ``queue_limit``: green, as the spec's monitor turns it."""

REJECTED_STYLE = "bold red"
"""Rej above zero: a client signs with the wrong key or cluster name, or worse."""

TOTAL_KEY = "__total__"


class ClustersTable(DataTable[Text]):
    """One row per live cluster, rebuilt on each poll; a silent cluster drops out."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    COLUMNS = ("Host", "Id", "State", "Pool", "TQ", "RQ", "RC", "Up", "Rej", "Redel")
    """The spec's columns, then packages rejected and tasks delivered again."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.clusters: list[ClusterInfo] = []

    def on_mount(self) -> None:
        for label in self.COLUMNS:
            self.add_column(label, key=label.lower())
        self.show_clusters([])

    def show_clusters(self, clusters: list[ClusterInfo]) -> None:
        """Replace the rows, keeping the cursor on the same cluster when it is still there."""
        self.clusters = list(clusters)
        keep = self._cursor_key()
        self.clear()
        for info in clusters:
            self.add_row(*self._cells(info), key=info.cluster_id)
        self.add_row(*self._totals(clusters), key=TOTAL_KEY)
        keys = [info.cluster_id for info in clusters]
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)

    def _cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # no valid cursor yet (empty table)
            return None
        return key

    @staticmethod
    def _cells(info: ClusterInfo) -> list[Text]:
        task_q = Text(str(info.task_q), justify="right")
        if info.is_full:
            task_q.stylize(FULL_STYLE)
        rejected = Text(str(info.rejected), justify="right")
        if info.rejected:
            rejected.stylize(REJECTED_STYLE)
        return [
            cell(info.host, 24),
            cell(info.cluster_id),
            Text(info.state, style=STATE_STYLES.get(info.state, "")),
            Text(str(info.pool), justify="right"),
            task_q,
            Text(str(info.result_q), justify="right"),
            Text(str(info.reincarnations), justify="right"),
            Text(uptime(info.uptime_s), justify="right"),
            rejected,
            Text(str(info.redeliveries), justify="right"),
        ]

    @staticmethod
    def _totals(clusters: list[ClusterInfo]) -> list[Text]:
        count = len(clusters)
        label = "no cluster running" if not count else f"{count} cluster" + "s" * (count != 1)

        def total(value: int) -> Text:
            return Text(str(value), style="bold", justify="right")

        return [
            Text(label, style="bold" if count else "dim italic"),
            Text(),
            Text(),
            total(sum(c.pool for c in clusters)),
            total(sum(c.task_q for c in clusters)),
            total(sum(c.result_q for c in clusters)),
            total(sum(c.reincarnations for c in clusters)),
            Text(),
            total(sum(c.rejected for c in clusters)),
            total(sum(c.redeliveries for c in clusters)),
        ]
