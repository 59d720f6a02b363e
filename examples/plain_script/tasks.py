"""The example's task functions.

They live in a module of their own, not in the script, because the cluster's
workers import them by name: a function defined in a script run as
``__main__`` cannot be found by another process.
"""

from __future__ import annotations

import time


def square(x: float) -> float:
    """Return ``x`` squared."""
    return x * x


def greet(name: str) -> str:
    """Return a greeting; the example's chain and schedule use it."""
    return f"Hello, {name}!"


def word_count(text: str) -> int:
    """Count the words of ``text``."""
    return len(text.split())


def slow_sum(numbers: list[float], delay_s: float = 0.2) -> float:
    """Sum ``numbers`` after ``delay_s`` seconds, to show that ``result`` waits."""
    time.sleep(delay_s)
    return sum(numbers)


def divide(a: float, b: float) -> float:
    """Divide; the example calls it with ``b=0`` to show how a failure is stored."""
    return a / b
