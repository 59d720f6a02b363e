"""``manage.py qmonitor``: the Textual monitor on the project's configuration, or one text snapshot.

The monitor (package ``tui``) never imports Django: it is handed the engine
configuration that ``qdjango.conf`` built from the settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from qengine.config import Config
from qengine.errors import QEngineError
from qengine.runtime import get_config

if TYPE_CHECKING:
    from qengine.status import Stat
    from tui.app import QMonitorApp

COLUMNS = ("Host", "Id", "State", "Pool", "TQ", "RQ", "RC", "Rej", "Redel", "Up")
"""The spec's monitor columns (pool size, task queue, result queue, reincarnations, uptime),
with the packages rejected unrun and the tasks received again, as qmonitor shows them."""


def uptime_text(seconds: float) -> str:
    """``H:MM:SS`` as the spec's monitor shows it (hours go past 24)."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def clusters_table(stats: list[Stat], now: datetime | None = None) -> list[str]:
    """The monitor's clusters table as text lines, with the totals of the counts below."""
    now = now or datetime.now(UTC)
    rows = [
        (
            s.host, str(s.cluster_id), s.status, str(len(s.workers)), str(s.task_q_size),
            str(s.done_q_size), str(s.reincarnations), str(s.rejected), str(s.redeliveries),
            uptime_text((now - s.tob).total_seconds()),
        )
        for s in stats
    ]  # fmt: skip
    totals = (
        "", "", "", str(sum(len(s.workers) for s in stats)),
        str(sum(s.task_q_size for s in stats)), str(sum(s.done_q_size for s in stats)), "",
        str(sum(s.rejected for s in stats)), str(sum(s.redeliveries for s in stats)), "",
    )  # fmt: skip
    widths = [max(len(row[i]) for row in [COLUMNS, *rows, totals]) for i in range(len(COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    if not rows:
        return [line(COLUMNS).rstrip(), "(no cluster is running)"]
    lines = [line(COLUMNS), *(line(row) for row in rows), line(totals)]
    return [text.rstrip() for text in lines]


def snapshot_text(config: Config) -> str:
    """One look at the clusters: the qinfo summary, then the monitor's clusters table."""
    from qengine.status import Stat, summary

    return "\n".join([*summary(config).lines(), "", *clusters_table(Stat.get_all(config))])


def monitor_app(config: Config) -> QMonitorApp:
    """The Textual monitor watching ``config``'s broker and store.

    Raises:
        CommandError: Textual is not installed (it is the ``tui`` extra).
    """
    try:
        from tui.app import QMonitorApp
        from tui.source import Source
    except ImportError as exc:
        raise CommandError(f"{exc}; install the monitor with: pip install 'qengine[tui]'") from exc
    return QMonitorApp(Source(config))


class Command(BaseCommand):
    help = (
        "Watch the clusters, tasks, failures, schedules and queue live "
        "(keys: 1-4 switch tabs, Enter opens a task, q quits)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--run-once",
            action="store_true",
            help="print one snapshot as text (summary and clusters) and exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = get_config()
            if options["run_once"]:
                self.stdout.write(snapshot_text(config))
                return
        except QEngineError as exc:
            raise CommandError(str(exc)) from exc
        monitor_app(config).run()
