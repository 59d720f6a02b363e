"""What the broker holds: packages waiting, and packages delivered but not acknowledged."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ..model import QueueInfo

__all__ = ["QueuePanel"]


class QueuePanel(Static):
    """Queued and in-flight counts, read from the broker every second."""

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Reading…", id=id, markup=False)
        self.queue: QueueInfo | None = None

    def on_mount(self) -> None:
        self.border_title = "Queue"

    def show_queue(self, queue: QueueInfo) -> None:
        self.queue = queue
        self.update(f"{'Queued':<10}{queue.queued:>8}\n{'In flight':<10}{queue.in_flight:>8}")
