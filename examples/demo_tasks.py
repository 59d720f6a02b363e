"""Task functions of the demo; the cluster's workers import them by dotted path."""

from __future__ import annotations

import time
from typing import Any


def slow_add(a: int, b: int) -> int:
    time.sleep(0.2)
    return a + b


def announce(task: Any) -> None:
    """A hook: the cluster calls it with the finished task."""
    print(f"hook: task {task.name} returned {task.result!r}", flush=True)
