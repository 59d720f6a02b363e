"""Task functions for the benchmarks."""

from __future__ import annotations


def noop(*args: object) -> None:
    return None
