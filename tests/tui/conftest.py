"""Fixtures of the monitor's tests: a store filled with known tasks and schedules, app drivers.

The suite's autouse fixture gives each test a fresh embedded SQLite store; the
fixtures here fill it through the engine's own API, so the monitor reads real
rows. Fixed ids and times keep the snapshot tests still.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled, WorkerFailed

import qengine
from qengine.db import StatRow, writing
from qengine.runtime import get_store, set_config_file
from qengine.schedules import Schedule, schedule
from qengine.status import Stat
from qengine.task import Task
from tui.app import QMonitorApp
from tui.source import Source

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
"""The frozen clock of the snapshot tests; far enough back that qinfo's 24 h window is empty."""


class FixedSource(Source):
    """A real source with a frozen clock and a title that does not name tmp_path."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)

    def describe(self) -> str:
        return "default · sqlite:///qengine.sqlite3"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body (the suite has no asyncio plugin)."""
    asyncio.run(scenario())


async def settle(pilot: Pilot[None], *, snapshots: int = 1) -> None:
    """Wait until every worker is done and at least ``snapshots`` snapshots were shown."""
    app = pilot.app
    assert isinstance(app, QMonitorApp)
    for _ in range(500):
        await pilot.pause()
        if app.snapshots >= snapshots and all(worker.is_finished for worker in app.workers):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the app showed {app.snapshots} snapshots, expected {snapshots}")


async def refreshed(pilot: Pilot[None]) -> None:
    """Ask for a full poll and wait until it is shown."""
    app = pilot.app
    assert isinstance(app, QMonitorApp)
    await settle(pilot)
    before = app.snapshots
    app.poll(full=True)
    await settle(pilot, snapshots=before + 1)


def notices(app: QMonitorApp) -> list[str]:
    """The texts of the notifications the app has shown (Textual keeps them privately)."""
    return [notification.message for notification in app._notifications]


@asynccontextmanager
async def monitor(
    source: Source | None = None, *, size: tuple[int, int] = (80, 24), poll_s: float = 3600
) -> AsyncIterator[Pilot[None]]:
    """The app running headless on the test's store, its first snapshot shown.

    The long poll interval leaves polls to the test (``refreshed``); on the way
    out the app's thread workers are waited for, so none outlives the test's store.
    """
    app = QMonitorApp(source or Source(), poll_s=poll_s)
    app.animation_level = "none"  # tab switches would otherwise wait for the underline to glide
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        try:
            yield pilot
        finally:
            # A worker the test cancelled (by quitting) or broke has nothing left to wait for.
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await app.workers.wait_for_complete()


@pytest.fixture
def config_file_reset() -> Iterator[None]:
    """``--config-file`` sets a process-wide path: drop it so later tests read no file."""
    yield
    set_config_file(None)


# -- data ----------------------------------------------------------------------------------


def save_task(
    task_id: str,
    name: str,
    *,
    func: str = "tests.tasks.add",
    args: tuple[object, ...] = (1, 2),
    kwargs: dict[str, object] | None = None,
    result: object = 3,
    success: bool = True,
    group: str | None = None,
    stopped: datetime = NOW,
    took_s: float = 0.25,
    attempts: int = 1,
) -> None:
    """Store a finished task with exactly these values (the API would pick ids and times)."""
    get_store().save_task(
        Task(
            id=task_id,
            name=name,
            func=func,
            args=args,
            kwargs=kwargs or {},
            result=result,
            group=group,
            started=stopped - timedelta(seconds=took_s),
            stopped=stopped,
            success=success,
            attempt_count=attempts,
            cluster="default",
        )
    )


TRACEBACK = (
    "ValueError: disk full\n\nTraceback (most recent call last):\n"
    '  File "reports.py", line 12, in build\n    raise ValueError("disk full")\n'
    "ValueError: disk full\n"
)


@pytest.fixture
def fixed_tasks() -> None:
    """Successes and failures at fixed times over the last ten minutes of ``NOW``."""
    for i in range(12):
        save_task(
            f"{i:032x}",
            f"add-{i:02d}",
            args=(i, 2),
            result=i + 2,
            group="adds",
            stopped=NOW - timedelta(seconds=40 * i + 5),
            took_s=0.1 + i / 100,
        )
    save_task(
        "f" * 32,
        "report-broken",
        func="tests.tasks.fail",
        args=("disk full",),
        kwargs={"retry": False},
        result=TRACEBACK,
        success=False,
        group="reports",
        stopped=NOW - timedelta(seconds=90),
        took_s=1.5,
        attempts=3,
    )
    save_task(
        "e" * 32,
        "echo-broken",
        func="tests.tasks.echo",
        result="TypeError: nope\n",
        success=False,
        stopped=NOW - timedelta(seconds=200),
        took_s=0.02,
    )


@pytest.fixture
def fixed_schedules() -> list[Schedule]:
    """Three schedules of different kinds, the first with a last (failed) run."""
    first = schedule(
        "tests.tasks.fail",
        "disk full",
        name="nightly-report",
        schedule_type=Schedule.CRON,
        cron="0 3 * * *",
        next_run=datetime(2025, 3, 15, 3, 0, tzinfo=UTC),
    )
    first.task = "f" * 32
    first.save()
    return [
        first,
        schedule(
            "tests.tasks.add",
            1,
            2,
            name="every-five",
            schedule_type=Schedule.MINUTES,
            minutes=5,
            repeats=7,
            next_run=datetime(2025, 3, 14, 9, 30, tzinfo=UTC),
        ),
        schedule(
            "tests.tasks.echo",
            "hello",
            schedule_type=Schedule.ONCE,
            repeats=0,
            next_run=datetime(2025, 4, 1, 12, 0, tzinfo=UTC),
        ),
    ]


def publish_cluster(
    cluster_id: str,
    *,
    host: str = "orion",
    status: str = "Working",
    workers: int = 4,
    task_q: int = 3,
    queue_limit: int = 16,
    reincarnations: int = 0,
    up_s: float = 75,
    lifetime: timedelta = timedelta(days=3650),
) -> Stat:
    """Put a cluster's snapshot in the store as a running cluster would, but long-lived.

    A real cluster's snapshot lives five seconds; the snapshot tests need one that
    stays for as long as the test runs, whatever the machine's speed.
    """
    config = qengine.get_config()
    stat = Stat(
        cluster_id=cluster_id,
        name=config.name,
        host=host,
        pid=int(cluster_id.partition(".")[0]),
        tob=NOW - timedelta(seconds=up_s),
        status=status,
        reincarnations=reincarnations,
        task_q_size=task_q,
        done_q_size=1 if status == "Working" else 0,
        workers=list(range(1000, 1000 + workers)),
        queue_limit=queue_limit,
    )
    with writing(get_store(config).engine) as conn:
        conn.execute(
            StatRow.__table__.insert(),
            {
                "cluster_id": f"{config.name}:{cluster_id}",
                "data": stat.to_json(),
                "expires": datetime.now(UTC) + lifetime,
            },
        )
    return stat


@pytest.fixture
def fixed_clusters() -> None:
    """Two clusters: one working with a full task queue, one idle."""
    publish_cluster("17004", host="orion", task_q=16, queue_limit=16, up_s=75)
    publish_cluster(
        "14710",
        host="phoenix",
        status="Idle",
        workers=8,
        task_q=0,
        queue_limit=64,
        reincarnations=2,
        up_s=618 + 86_400,
    )


@pytest.fixture
def queued() -> None:
    """Two tasks waiting in the broker (nothing runs them: no cluster in these tests)."""
    qengine.async_task("tests.tasks.add", 1, 1)
    qengine.async_task("tests.tasks.add", 2, 2)
