"""RQ's task functions: ``rq worker`` imports ``tasks_rq.noop`` (cwd and PYTHONPATH bench/peers)."""

from __future__ import annotations

from workload import noop, realistic

__all__ = ["noop", "realistic"]
