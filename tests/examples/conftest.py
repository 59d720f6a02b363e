"""The examples run against real clusters: the cluster fixtures of ``tests/cluster``, reused."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.cluster.conftest import ROOT, ClusterProcess, cluster_env, embedded, start_cluster

__all__ = ["ROOT", "ClusterProcess", "cluster_env", "embedded", "start_cluster", "wait_until"]


def wait_until(probe: Callable[[], Any], timeout_s: float = 15, interval_s: float = 0.05) -> Any:
    """Call ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")
