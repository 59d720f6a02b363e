"""Real clusters in subprocesses: started with ``qcluster``, always stopped by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import qengine
from qengine.config import Config
from qengine.status import Stat

ROOT = Path(__file__).resolve().parents[2]


class ClusterProcess:
    """A ``qcluster`` subprocess with its log file; ``stop()`` sends SIGTERM and waits."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qengine.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_running(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "running." in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"qcluster exited early:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"qcluster did not start in {timeout}s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 60) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"qcluster did not stop in {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        """Kill the cluster and everything it started (its own session)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def worker_pids(self, config: Config) -> list[int]:
        for stat in Stat.get_all(config):
            if stat.pid == self.pid:
                return stat.workers
        return []


def cluster_env(config: Config) -> dict[str, str]:
    """The environment that gives a subprocess exactly ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    for key, value in config.as_dict(masked=False).items():
        if value is None or (key == "queue_limit" and value == config.workers**2):
            continue
        if isinstance(value, dict):
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
