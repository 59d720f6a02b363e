"""The banner that says which part (broker, result store) cannot be reached."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

__all__ = ["MONITOR", "Banner"]

MONITOR = "Monitor"
"""The part named when the monitor itself failed (a bug), rather than something it reads."""


class Banner(Static):
    """Hidden while everything answers; names each unreachable part and what it said.

    The rest of the screen keeps the last figures it read, so the banner also
    says that they may be stale; it disappears on the first poll that works.
    """

    DEFAULT_CSS = Path(__file__).with_suffix(".tcss").read_text(encoding="utf-8")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.problems: dict[str, str] = {}

    def show_problems(self, problems: dict[str, str]) -> None:
        """Show these problems (part name → error text), or hide when there are none."""
        self.problems = dict(problems)
        if not problems:
            self.remove_class("-shown")
            self.update("")
            return
        lines = [
            f"⚠ {part} {'error' if part == MONITOR else 'unreachable'}: {message}"
            for part, message in sorted(problems.items())
        ]
        lines.append("Showing the last figures read; retrying every second.")
        self.update("\n".join(lines))
        self.add_class("-shown")
