"""One task in full: arguments, result or traceback, timings, attempts; resubmit a failure."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ..formats import moment, seconds
from ..model import TaskInfo
from .confirm import ConfirmScreen

__all__ = ["TaskDetailScreen"]


class TaskDetailScreen(ModalScreen[str | None]):
    """Shows ``info``; dismisses with "resubmit" once a resubmit is confirmed, else None.

    The app, not this screen, resubmits: the screen never touches the source.
    """

    CSS_PATH = "task_detail.tcss"

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("r", "resubmit", "Resubmit"),
    ]

    def __init__(self, info: TaskInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        task = self.info
        state = "Success" if task.success else "Failure"
        facts = [
            ("Id", task.id),
            ("Name", task.name),
            ("Func", task.func),
            ("Hook", task.hook or "-"),
            ("Group", task.group or "-"),
            ("Cluster", task.cluster or "-"),
            ("Started", f"{moment(task.started)}  (enqueued)"),
            ("Stopped", moment(task.stopped)),
            ("Time", seconds(task.time_taken_s)),
            ("Attempts", str(task.attempts)),
        ]
        with Vertical(id="dialog", classes="-success" if task.success else "-failure"):
            yield Label(f"{state}: {task.name}", id="title", markup=False)
            with VerticalScroll(id="body"):
                yield Static(
                    "\n".join(f"{label:<9} {value}" for label, value in facts),
                    id="facts",
                    markup=False,
                )
                yield Label("Args", classes="heading")
                yield Static(task.args, id="args", markup=False)
                yield Label("Kwargs", classes="heading")
                yield Static(task.kwargs, id="kwargs", markup=False)
                yield Label("Result" if task.success else "Traceback", classes="heading")
                yield Static(task.result, id="result", markup=False)
            with Horizontal(id="buttons"):
                if not task.success:
                    yield Button("Resubmit (r)", variant="warning", id="resubmit")
                yield Button("Close (esc)", variant="primary", id="close")

    def on_mount(self) -> None:
        self.query_one("#body").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A success has nothing to resubmit: hide the key rather than offer a no-op.
        if action == "resubmit":
            return not self.info.success
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "resubmit":
            self.action_resubmit()
        else:
            self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_resubmit(self) -> None:
        if self.info.success:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss("resubmit")

        self.app.push_screen(
            ConfirmScreen(
                f"Resubmit task {self.info.name}?",
                detail=f"{self.info.func} is queued again with the same arguments; "
                "this failure is removed from the store.",
                yes="Resubmit",
            ),
            answered,
        )
