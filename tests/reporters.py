"""Importable error reporter plugins for the suite: configurations name them by dotted path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qengine.reporters import FailureReport


class RecordingReporter:
    """Keeps every report in memory (sync mode reports in the test's own process)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.reports: list[FailureReport] = []
        self.is_closed = False

    def report(self, failure: FailureReport) -> None:
        self.reports.append(failure)

    def close(self) -> None:
        self.is_closed = True


class BrokenReporter:
    """A plugin whose service is down: every report raises."""

    def report(self, failure: FailureReport) -> None:
        raise ConnectionError("reporting service unreachable")


class RefusingReporter:
    """A plugin whose constructor fails for a reason of its own."""

    def __init__(self) -> None:
        raise RuntimeError("no route to the reporting service")

    def report(self, failure: FailureReport) -> None:
        raise AssertionError("never built")


class FileReporter:
    """Appends one JSON line per report, for clusters running in another process."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def report(self, failure: FailureReport) -> None:
        line = {
            "id": failure.id,
            "name": failure.name,
            "func": failure.func,
            "summary": failure.summary,
            "attempt_count": failure.attempt_count,
        }
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")


class SlowReporter:
    """A plugin with a blocking transport: each report takes ``seconds``, then is written down."""

    def __init__(self, path: str, seconds: float) -> None:
        self.path = Path(path)
        self.seconds = seconds

    def report(self, failure: FailureReport) -> None:
        import time

        time.sleep(self.seconds)
        with self.path.open("a") as out:
            out.write(failure.id + "\n")
