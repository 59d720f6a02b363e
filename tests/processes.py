"""A cluster in a subprocess (``qcluster`` or ``manage.py qcluster``), always stopped by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qengine.config import Config
from qengine.status import Stat

ROOT = Path(__file__).resolve().parents[1]


class ClusterProcess:
    """A ``qcluster`` subprocess with its log file; ``stop()`` sends SIGTERM and waits."""

    def __init__(
        self, env: dict[str, str], log_path: Path, args: list[str], *, module: str = "qengine.cli"
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
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
        # The group outlives its leader: a test that killed the cluster alone (or a cluster
        # that crashed) may have left members, and while any is alive the id is not reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)
        self._log.close()

    def wait_published(self, config: Config | None = None, timeout: float = 30) -> None:
        """Wait until the cluster publishes its status (it is then ready for work)."""
        deadline = time.monotonic() + timeout
        while not any(s.pid == self.pid for s in Stat.get_all(config)):
            if self.process.poll() is not None:
                raise AssertionError(f"qcluster exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"qcluster did not start in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def shutdown(self, timeout: float = 30) -> None:
        """For teardown: SIGTERM and wait, then kill whatever is left; never raises."""
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self.kill()

    def worker_pids(self, config: Config) -> list[int]:
        for stat in Stat.get_all(config):
            if stat.pid == self.pid:
                return stat.workers
        return []
