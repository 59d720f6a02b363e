"""Cluster status snapshots (``Stat``): JSON with a short lifetime, in Redis or the store.

A cluster publishes its snapshot every second; one that stops publishing
disappears when its snapshot expires. This module is the monitors' only
source of cluster data, so the TUI can run wherever the broker or store is
reachable.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Config
from .runtime import get_broker, get_config, get_stats, get_store

__all__ = ["STATES", "Stat", "Summary", "summary", "task_rate"]

STATES = ("Starting", "Idle", "Working", "Stopping", "Stopped")
TTL_S = 5
"""Seconds a snapshot lives; a cluster publishes every second."""


@dataclass(slots=True, kw_only=True)
class Stat:
    """One cluster's status: the spec's ``Stat`` fields plus what monitors show."""

    cluster_id: str
    name: str = "default"
    host: str = field(default_factory=socket.gethostname)
    pid: int = 0
    tob: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "Starting"
    reincarnations: int = 0
    task_q_size: int = 0
    """Tasks this cluster holds that have not finished yet."""
    done_q_size: int = 0
    """Finished tasks whose results are not saved yet."""
    pusher: int = 0
    monitor: int = 0
    sentinel: int = 0
    workers: list[int] = field(default_factory=list)
    queue_limit: int = 0
    processed: int = 0
    failed: int = 0
    rss_kb: int = 0
    """Resident memory of the cluster process and its workers."""
    rejected: int = 0
    """Packages dropped unrun since the cluster started. Refused before unpickling: bad
    signature (a client with the wrong ``secret_key`` or cluster name, tampering),
    truncated, oversized, over the decompression cap; or verified but not unpackable here."""
    redeliveries: int = 0
    """Tasks received with a delivery count over 1 since the cluster started: delivered
    again after a cluster died or a lease (``retry``) ran out."""
    timestamp: float = field(default_factory=time.time)

    def uptime(self) -> float:
        """Seconds since the cluster was born."""
        return (datetime.now(UTC) - self.tob).total_seconds()

    def empty_queues(self) -> bool:
        return self.task_q_size == 0 and self.done_q_size == 0

    def to_json(self) -> str:
        data = asdict(self)
        data["tob"] = self.tob.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Stat:
        data: dict[str, Any] = json.loads(text)
        data["tob"] = datetime.fromisoformat(data["tob"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    # -- publishing and reading --------------------------------------------------------

    def save(self, config: Config) -> None:
        """Publish this snapshot for ``TTL_S`` seconds."""
        self.timestamp = time.time()
        get_stats(config).put(self.name, self.cluster_id, self.to_json(), TTL_S)

    def clear(self, config: Config) -> None:
        get_stats(config).remove(self.name, self.cluster_id)

    @classmethod
    def get(cls, cluster_id: str, config: Config | None = None) -> Stat | None:
        for stat in cls.get_all(config):
            if str(stat.cluster_id) == str(cluster_id):
                return stat
        return None

    @classmethod
    def get_all(cls, config: Config | None = None) -> list[Stat]:
        """Every live cluster of this configuration's cluster name."""
        config = config or get_config()
        stats = [Stat.from_json(text) for text in get_stats(config).all(config.name)]
        return sorted(stats, key=lambda s: (s.host, s.cluster_id))


# -- the qinfo summary -------------------------------------------------------------------

RATE_SAMPLE = 10_000
"""Newest tasks of the last 24 h that the average time is computed over."""


@dataclass(slots=True, kw_only=True)
class Summary:
    """Figures over every live cluster of a name, as ``qinfo`` prints them."""

    name: str
    clusters: int
    workers: int
    restarts: int
    queued: int
    successes: int
    failures: int
    schedules: int
    rate: float
    rate_unit: str
    avg_time: float
    rejected: int
    """Packages the live clusters refused (see ``Stat.rejected``)."""
    redeliveries: int
    """Tasks the live clusters received more than once (see ``Stat.redeliveries``)."""

    def lines(self) -> list[str]:
        return [
            f"-- {self.name} summary --",
            f"Clusters   {self.clusters:<8} Workers     {self.workers:<8} "
            f"Restarts  {self.restarts}",
            f"Queued     {self.queued:<8} Successes   {self.successes:<8} "
            f"Failures  {self.failures}",
            f"Schedules  {self.schedules:<8} Tasks/{self.rate_unit:<6}{self.rate:<8.2f} "
            f"Avg time  {self.avg_time:.4f}",
            f"Rejected   {self.rejected:<8} Redelivered {self.redeliveries}",
        ]


def task_rate(per_day: int) -> tuple[float, str]:
    """Tasks per second, minute, hour or day, whichever reads best for this volume."""
    if per_day > 24 * 60 * 60:
        return per_day / (24 * 60 * 60), "second"
    if per_day > 24 * 60:
        return per_day / (24 * 60), "minute"
    if per_day > 24:
        return per_day / 24, "hour"
    return float(per_day), "day"


def summary(config: Config | None = None) -> Summary:
    """Compute the qinfo figures: clusters from their snapshots, tasks from the store."""
    # Imported here so that a cluster on a SQLite store and Redis never loads SQLAlchemy.
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from .db import ScheduleRow, TaskRow, store_error

    config = config or get_config()
    stats = Stat.get_all(config)
    store = get_store(config)
    since = datetime.now(UTC) - timedelta(days=1)
    try:
        queued = get_broker(config).queue_size()
    except Exception:  # an unreachable broker shows as zero queued, not as a crash
        queued = 0
    try:
        with store.engine.connect() as conn:
            schedules = int(conn.scalar(select(func.count()).select_from(ScheduleRow)) or 0)
            recent = conn.execute(
                select(TaskRow.started, TaskRow.stopped)
                .where(TaskRow.stopped >= since)
                .order_by(TaskRow.stopped.desc())
                .limit(RATE_SAMPLE)
            ).all()
    except SQLAlchemyError as exc:
        raise store_error(config.store, "read the summary", exc) from exc
    per_day = store.count(since=since)
    rate, unit = task_rate(per_day)
    times = [(stopped - started).total_seconds() for started, stopped in recent]
    return Summary(
        name=config.name,
        clusters=len(stats),
        workers=sum(len(s.workers) for s in stats),
        restarts=sum(s.reincarnations for s in stats),
        queued=queued,
        successes=store.count(success=True),
        failures=store.count(success=False),
        schedules=schedules,
        rate=rate,
        rate_unit=unit,
        avg_time=sum(times) / len(times) if times else 0.0,
        rejected=sum(s.rejected for s in stats),
        redeliveries=sum(s.redeliveries for s in stats),
    )
