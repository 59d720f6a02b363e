"""django-q2's task functions: its cluster imports ``tasks_djq.noop`` by dotted path."""

from __future__ import annotations

from workload import noop, realistic

__all__ = ["noop", "realistic"]
