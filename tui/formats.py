"""How the monitor writes durations, times and outcomes, the same on every screen."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

__all__ = ["cell", "moment", "outcome", "seconds", "shorten", "uptime"]


def uptime(total_s: float) -> str:
    """``H:MM:SS`` as in the spec's monitor, with days in front past a day (``2d 03:04:05``)."""
    whole = max(0, int(total_s))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"


def moment(value: datetime | None) -> str:
    """Month, day and time: short enough for a table column at 80 columns."""
    return "-" if value is None else value.strftime("%m-%d %H:%M:%S")


def seconds(value: float) -> str:
    """A duration with the precision that matters at its size."""
    if value < 10:
        return f"{value:.3f}s"
    if value < 3_600:
        return f"{value:.1f}s"
    return uptime(value)


def outcome(success: bool | None) -> Text:
    """A coloured mark: ✓ success, ✗ failure, - unknown."""
    if success is None:
        return Text("-", style="dim")
    return Text("✓", style="bold green") if success else Text("✗", style="bold red")


def shorten(text: str | None, width: int) -> str:
    """Cut ``text`` to ``width`` characters, marking the cut with an ellipsis."""
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(text: str | None, width: int | None = None, *, style: str = "") -> Text:
    """A table cell showing ``text`` as it is.

    A plain ``str`` in a DataTable is read as markup, so a task named
    ``[x]`` would lose its brackets, or break the table; ``Text`` is not.
    """
    return Text(shorten(text, width) if width else text or "", style=style)
