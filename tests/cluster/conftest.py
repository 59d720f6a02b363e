"""Real clusters in subprocesses: started with ``qcluster``, always stopped by pid."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

import qengine
from qengine.config import Config, default_queue_limit
from tests.processes import ROOT, ClusterProcess

__all__ = ["ROOT", "ClusterProcess", "cluster_env", "embedded", "start_cluster"]


def cluster_env(config: Config) -> dict[str, str]:
    """The environment that gives a subprocess exactly ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    for key, value in config.as_dict(masked=False).items():
        if value is None or (key == "queue_limit" and value == default_queue_limit(config.workers)):
            continue
        if isinstance(value, dict | list):
            import json

            env[f"QENGINE_{key.upper()}"] = json.dumps(value)
        else:
            env[f"QENGINE_{key.upper()}"] = str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def start_cluster(tmp_path) -> Iterator[Callable[..., ClusterProcess]]:
    """Start ``qcluster`` on the current configuration (plus ``overrides``); stopped afterwards."""
    started: list[ClusterProcess] = []

    def start(*args: str, wait: bool = True, **overrides) -> ClusterProcess:
        config = qengine.get_config().replace(**overrides) if overrides else qengine.get_config()
        log_path = tmp_path / f"cluster-{len(started)}.log"
        cluster = ClusterProcess(cluster_env(config), log_path, list(args))
        started.append(cluster)
        if wait:
            cluster.wait_running()
        return cluster

    yield start
    for cluster in started:
        cluster.kill()


@pytest.fixture
def embedded(tmp_path) -> Config:
    """The embedded default with a short retry, for cluster tests on SQLite."""
    return qengine.configure(
        store=f"sqlite:///{tmp_path}/cluster.sqlite3",
        secret_key="cluster-tests",
        workers=2,
        retry=30,
        poll=0.05,
        guard_cycle=0.2,
    )
