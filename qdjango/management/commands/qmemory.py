"""``manage.py qmemory``: resident memory of each cluster and of each of its workers.

Clusters publish their total (cluster process plus workers) and their
workers' pids in their status snapshot; each worker's own size is read with
psutil, which only works for clusters on this host. Others show their
published total and say so.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import psutil
from django.core.management.base import BaseCommand, CommandError, CommandParser

from qengine.config import Config
from qengine.errors import QEngineError
from qengine.runtime import get_config
from qengine.status import Stat

NOT_HERE = "not on this host"
GONE = "gone"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What is known of one cluster's memory, in MB (None: not measurable from here)."""

    stat: Stat
    is_local: bool
    cluster_mb: float | None
    workers_mb: list[tuple[int, float | None]]
    """(pid, MB) of each worker; MB None when the process is gone."""

    @property
    def total_mb(self) -> float:
        """Measured here when local, else what the cluster published."""
        if not self.is_local:
            return self.stat.rss_kb / 1024
        return (self.cluster_mb or 0) + sum(mb or 0 for _, mb in self.workers_mb)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process of this host in MB, None if there is no such process."""
    try:
        return psutil.Process(pid).memory_info().rss / (1024 * 1024)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def measure(stat: Stat, host: str | None = None) -> Usage:
    """Read the memory of ``stat``'s cluster and workers when it runs on this host."""
    is_local = stat.host == (host or socket.gethostname()) and psutil.pid_exists(stat.pid)
    if not is_local:
        return Usage(stat=stat, is_local=False, cluster_mb=None, workers_mb=[])
    return Usage(
        stat=stat,
        is_local=True,
        cluster_mb=rss_mb(stat.pid),
        workers_mb=[(pid, rss_mb(pid)) for pid in stat.workers],
    )


def _mb(value: float | None) -> str:
    return GONE if value is None else f"{value:.1f}"


def memory_lines(config: Config, *, workers: bool = False) -> list[str]:
    """The qmemory table: one line per cluster, and with ``workers`` one per worker below it."""
    usages = [measure(stat) for stat in Stat.get_all(config)]
    header = (
        f"{'Host':<16}  {'Id':<12}  {'Workers':>7}  {'Cluster MB':>10}  {'Workers MB':>10}  "
        f"{'Total MB':>9}"
    )
    lines = [f"-- {config.name} memory --", header]
    for usage in usages:
        stat = usage.stat
        if usage.is_local:
            cluster = _mb(usage.cluster_mb)
            pool = f"{sum(mb or 0 for _, mb in usage.workers_mb):.1f}"
            total = f"{usage.total_mb:>9.1f}"
        else:
            cluster, pool, total = "-", "-", f"{usage.total_mb:>9.1f}  ({NOT_HERE})"
        lines.append(
            f"{stat.host:<16}  {stat.cluster_id!s:<12}  {len(stat.workers):>7}  {cluster:>10}  "
            f"{pool:>10}  {total}"
        )
        if workers and usage.is_local:
            lines.extend(
                f"{'':<16}  worker {pid:<26}  {_mb(mb):>10}" for pid, mb in usage.workers_mb
            )
    if not usages:
        lines.append("(no cluster is running)")
    memory = psutil.virtual_memory()
    lines.append(
        f"This host: {memory.available / 2**30:.1f} GB of {memory.total / 2**30:.1f} GB available "
        f"({100 - memory.percent:.0f}%)"
    )
    return lines


class Command(BaseCommand):
    help = "Show the memory of each cluster and its workers, refreshed until Ctrl+C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run-once", action="store_true", help="print once and exit")
        parser.add_argument(
            "--workers", action="store_true", help="list each worker of clusters on this host"
        )
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between two refreshes (default 2)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a number of seconds > 0")
        try:
            config = get_config()
            while True:
                self.stdout.write("\n".join(memory_lines(config, workers=options["workers"])))
                if options["run_once"]:
                    return
                self.stdout.write("")
                self.stdout.flush()
                time.sleep(options["interval"])
        except QEngineError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            return
