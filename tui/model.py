"""Plain data the source hands to the screens: no qengine objects cross into the widgets.

Widgets only format these values, so they can be tested with made-up data and
never touch the broker or the store themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from qengine.status import Summary

__all__ = [
    "ActionResult",
    "ClusterInfo",
    "PollRequest",
    "QueueInfo",
    "ScheduleInfo",
    "Snapshot",
    "SummaryInfo",
    "TaskFilter",
    "TaskInfo",
    "TaskLine",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo:
    """One live cluster: the spec's monitor columns and a few figures more."""

    cluster_id: str
    host: str
    state: str
    """Starting, Idle, Working, Stopping or Stopped."""
    pool: int
    """Worker processes."""
    task_q: int
    """Tasks the cluster holds that have not finished (the spec's TQ)."""
    result_q: int
    """Finished tasks whose results are not saved yet (the spec's RQ)."""
    reincarnations: int
    uptime_s: float
    queue_limit: int
    processed: int = 0
    failed: int = 0
    rss_kb: int = 0
    rejected: int = 0
    """Packages refused unopened: bad signature (a client's wrong ``secret_key``), oversized…"""
    redeliveries: int = 0
    """Tasks received again after a cluster died or a lease ran out."""

    @property
    def is_full(self) -> bool:
        """True when the cluster holds as many tasks as ``queue_limit`` allows."""
        return self.queue_limit > 0 and self.task_q >= self.queue_limit


SummaryInfo = Summary
"""The qinfo figures over every live cluster of the configured name (the engine's own)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    """What the broker holds for this cluster name."""

    queued: int
    """Packages waiting to be delivered."""
    in_flight: int
    """Packages delivered to a cluster and not acknowledged yet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLine:
    """A stored task as a list shows it; its values are read only when it is opened."""

    id: str
    name: str
    func: str
    group: str | None
    success: bool
    stopped: datetime | None
    """When it finished, in the configured zone."""
    time_taken_s: float
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A stored task, its values already turned into text for display."""

    id: str
    name: str
    func: str
    hook: str | None
    group: str | None
    cluster: str | None
    args: str
    kwargs: str
    result: str
    """The result's repr, or the traceback of a failure."""
    success: bool
    started: datetime | None
    """When the task was enqueued (the spec's ``started``), in the configured zone."""
    stopped: datetime | None
    """When it finished, in the configured zone."""
    time_taken_s: float
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleInfo:
    """A schedule with the outcome of its last task."""

    id: int
    name: str | None
    func: str
    type_label: str
    every: str
    """The interval of a Minutes schedule or the expression of a Cron one; else empty."""
    repeats: int
    next_run: datetime | None
    """In the configured zone."""
    cluster: str | None
    last_task: str | None
    last_success: bool | None

    @property
    def is_paused(self) -> bool:
        """``repeats`` 0: the scheduler never runs it (paused, or its runs are used up)."""
        return self.repeats == 0

    @property
    def label(self) -> str:
        return self.name or f"#{self.id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    """Exact group and function a task list is narrowed to; None matches any."""

    group: str | None = None
    func: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PollRequest:
    """What one poll should read: clusters and queue always, the rest when ``full``."""

    full: bool = True
    """Also read the summary, the rate, the task lists and the schedules (slower queries)."""
    tasks: TaskFilter = field(default_factory=TaskFilter)
    failures: TaskFilter = field(default_factory=TaskFilter)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """One poll's answers. None means "not read this time, or could not be read"."""

    clusters: list[ClusterInfo] | None = None
    queue: QueueInfo | None = None
    summary: SummaryInfo | None = None
    rate: list[float] | None = None
    """Tasks per second, oldest slice first."""
    rate_window_s: float = 600
    tasks: list[TaskLine] | None = None
    failures: list[TaskLine] | None = None
    schedules: list[ScheduleInfo] | None = None
    groups: list[str] | None = None
    funcs: list[str] | None = None
    problems: dict[str, str] = field(default_factory=dict)
    """What could not be read, by the name of the part ("Broker", "Result store", …)."""
    checked: frozenset[str] = frozenset()
    """The parts this poll asked; a part not asked keeps its earlier problem, if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult:
    """What an action (resubmit, pause, …) did, in words for a notification."""

    ok: bool
    message: str
