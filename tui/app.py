"""QMonitorApp: the key bindings, the poll timer and the actions' confirmations."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from .model import ActionResult, PollRequest, ScheduleInfo, Snapshot, TaskFilter, TaskInfo
from .screens.confirm import ConfirmScreen
from .screens.monitor import MonitorScreen
from .screens.task_detail import TaskDetailScreen
from .source import Source
from .widgets.banner import MONITOR
from .widgets.schedule_table import ScheduleTable
from .widgets.task_filters import TaskFilters
from .widgets.task_table import TaskTable

__all__ = ["QMonitorApp"]

T = TypeVar("T")

STALLED = "Broker or result store"
"""The banner's name for "a poll has been waiting too long", whichever part hangs."""


class QMonitorApp(App[None]):
    """The ``qmonitor`` terminal monitor.

    A timer asks the source for a snapshot every ``poll_s`` seconds, in a
    worker that waits on a thread, so a slow or dead broker never freezes the
    keys (see ``_off_the_loop`` for why the thread is not Textual's). Clusters
    and the queue are read on each tick; the summary, rate, task lists and
    schedules every ``full_every`` ticks (their queries cost more) and right
    after anything that changes them. A poll still running when the next
    tick comes is not doubled: the tick is folded into the next poll.

    Args:
        source: what to read; default a ``Source`` of the current configuration.
        poll_s: seconds between two ticks.
        full_every: ticks between two full reads.
        stall_s: seconds a poll may wait before the banner says nothing answers.
    """

    TITLE = "qmonitor"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh", "Refresh"),
        Binding("s", "save_screenshot", "Screenshot", show=False),
    ]

    def __init__(
        self,
        source: Source | None = None,
        *,
        poll_s: float = 1.0,
        full_every: int = 5,
        stall_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.source = source or Source()
        self.poll_s = poll_s
        self.full_every = max(1, full_every)
        self.stall_s = stall_s
        self.monitor = MonitorScreen()
        self.problems: dict[str, str] = {}
        self.filters = {"tasks": TaskFilter(), "failures": TaskFilter()}
        """What the filters above the two task lists hold, by tab."""
        self.snapshots = 0
        """Snapshots applied so far; tests wait on it."""
        self._ticks = 0
        self._polling_since: float | None = None
        self._pending: bool | None = None
        """A poll asked for while one ran: None none, else whether it is a full one."""

    def on_mount(self) -> None:
        self.sub_title = self.source.describe()
        self.push_screen(self.monitor)

    def on_monitor_screen_ready(self, message: MonitorScreen.Ready) -> None:
        # Polls start once the widgets exist: a snapshot has nowhere to go before.
        self.poll(full=True)
        self.set_interval(self.poll_s, self._tick)

    def on_unmount(self) -> None:
        self.source.close()

    # -- polling -----------------------------------------------------------------------

    def _tick(self) -> None:
        self._ticks += 1
        self.poll(full=self._ticks % self.full_every == 0)
        self._check_stall()

    def poll(self, *, full: bool) -> None:
        """Read a snapshot in the background, or fold the request into the running one's next."""
        if self._polling_since is not None:
            self._pending = bool(self._pending) or full
            return
        request = PollRequest(
            full=full, tasks=self.filters["tasks"], failures=self.filters["failures"]
        )
        self._polling_since = time.monotonic()
        self._background("poll", partial(self.source.poll, request))

    def _check_stall(self) -> None:
        if self._polling_since is None:
            return
        waited = time.monotonic() - self._polling_since
        if waited >= self.stall_s:
            self.problems[STALLED] = f"no answer for {waited:.0f} s"
            self.monitor.show_problems(self.problems)

    def _apply(self, snapshot: Snapshot) -> None:
        for part in (*snapshot.checked, STALLED, MONITOR):
            self.problems.pop(part, None)
        self.problems.update(snapshot.problems)
        try:
            self.monitor.show_snapshot(snapshot)
            self.monitor.show_problems(self.problems)
        except NoMatches:
            # A poll that ends while the screen is still being built or already torn
            # down (quitting) has nothing to show; the next one will.
            return
        self.snapshots += 1

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        if worker.group == "poll":
            self._polling_since = None
            if event.state == WorkerState.SUCCESS and isinstance(worker.result, Snapshot):
                self._apply(worker.result)
            elif worker.error is not None:  # Source.poll never raises; a bug here must not kill
                self.problems[MONITOR] = f"{type(worker.error).__name__}: {worker.error}"
                self.monitor.show_problems(self.problems)
            pending, self._pending = self._pending, None
            if pending is not None:
                self.poll(full=pending)
        elif worker.group == "detail" and event.state == WorkerState.SUCCESS:
            self._open_detail(worker.result)
        elif worker.group == "action":
            result = worker.result if event.state == WorkerState.SUCCESS else None
            if isinstance(result, ActionResult):
                severity = "information" if result.ok else "error"
                self.notify(result.message, severity=severity, markup=False)
            else:
                self.notify(f"The action failed: {worker.error}", severity="error", markup=False)
            self.poll(full=True)

    def action_refresh(self) -> None:
        self.poll(full=True)

    def action_save_screenshot(self) -> None:
        """Save the screen as SVG in the current folder (Textual's own action picks Downloads)."""
        try:
            path = self.save_screenshot()
        except OSError as exc:
            self.notify(f"Could not save the screenshot: {exc}", severity="error", markup=False)
        else:
            self.notify(f"Screenshot saved as {path}", markup=False)

    # -- tasks -------------------------------------------------------------------------

    def on_task_filters_changed(self, message: TaskFilters.Changed) -> None:
        tab = (message.filters.id or "").removesuffix("-filters")
        if tab in self.filters:
            self.filters[tab] = message.value
            self.poll(full=True)

    def on_task_table_open(self, message: TaskTable.Open) -> None:
        self._background("detail", partial(self.source.task, message.task_id))

    def _open_detail(self, info: Any) -> None:
        if not isinstance(info, TaskInfo):
            self.notify(
                "That task is no longer in the store (resubmitted, pruned or unreachable).",
                severity="warning",
                markup=False,
            )
            self.poll(full=True)
            return

        def closed(answer: str | None) -> None:
            if answer == "resubmit":
                self._act(partial(self.source.resubmit, info.id))

        self.push_screen(TaskDetailScreen(info), closed)

    # -- schedules ---------------------------------------------------------------------

    def on_schedule_table_action(self, message: ScheduleTable.Action) -> None:
        item = message.schedule
        source = self.source
        if message.action == "toggle" and item.is_paused:
            question, detail, yes = f"Resume schedule {item.label}?", "", "Resume"
            call = partial(source.resume, item.id)
        elif message.action == "toggle":
            question, yes = f"Pause schedule {item.label}?", "Pause"
            detail = "It will not run until resumed (its repeats are kept)."
            call = partial(source.pause, item.id)
        elif message.action == "run_now":
            question, yes = f"Run schedule {item.label} now?", "Run now"
            detail = _run_now_detail(item)
            call = partial(source.run_now, item.id)
        else:
            question, yes = f"Delete schedule {item.label}?", "Delete"
            detail = f"{item.func} will no longer be scheduled; this cannot be undone."
            call = partial(source.delete, item.id)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._act(call)

        self.push_screen(ConfirmScreen(question, detail=detail, yes=yes), answered)

    def _act(self, call: Callable[[], ActionResult]) -> None:
        self._background("action", call)

    # -- threads -----------------------------------------------------------------------

    def _background(self, group: str, call: Callable[[], Any]) -> None:
        """Run ``call`` off the event loop; ``on_worker_state_changed`` gets its result."""
        self.run_worker(_off_the_loop(call), name=group, group=group, exit_on_error=False)


async def _off_the_loop(call: Callable[[], T]) -> T:
    """Run ``call`` in a daemon thread and wait for it without blocking the loop.

    Textual's thread workers run in the event loop's default executor, which
    ``asyncio.run`` joins when the app ends: a poll stuck on a dead host (a
    TCP connect can wait two minutes) would then hold ``q`` for as long. A
    daemon thread is simply left behind; whatever it returns late is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # cancelled meanwhile: the app is closing
            outcome()

    def target() -> None:
        try:
            value = call()
        except BaseException as exc:  # handed to the awaiting worker, which reports it
            outcome = partial(future.set_exception, exc)
        else:
            outcome = partial(future.set_result, value)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the app has quit
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name="qmonitor-source", daemon=True).start()
    return await future


def _run_now_detail(item: ScheduleInfo) -> str:
    """What "run now" does to this schedule's later runs: they count from now."""
    if item.type_label in {"Once", "Cron"}:
        return "A running cluster queues its task within a second."
    return (
        "A running cluster queues its task within a second; "
        f"later runs then count from now ({item.type_label.lower()})."
    )
