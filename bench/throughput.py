"""Cluster throughput, latency and memory: prints figures, asserts nothing.

For each broker (Redis, SQL on SQLite, SQL on PostgreSQL), with a real
``qcluster`` of 2 workers in a subprocess and results saved in a SQL store:

  (a) drain: 10,000 no-op tasks queued first, then the cluster starts;
      from "running" to the last result stored;
  (b) end to end: one producer calling ``async_task`` per task, from the
      first enqueue to the last result stored;
  (c) round trip: one task at a time, ``async_task`` then ``result(wait=-1)``,
      p50 and p99 over 500 tasks;
  (d) peak memory of the cluster process and its children (forkserver,
      workers, resource tracker): the proportional set size (PSS), which
      counts pages the workers share with the forkserver once, and for
      comparison the plain sum of resident set sizes (RSS), which counts
      them once per process.

Usage: ``.venv/bin/python bench/throughput.py [redis] [sqlite] [postgres] [-n 10000] [-r 1]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import qengine  # noqa: E402
import qengine.signing  # noqa: E402
import qengine.status  # noqa: E402
from qengine.db import TaskRow  # noqa: E402
from qengine.store import get_store  # noqa: E402

REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "QENGINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOOP = "bench.tasks.noop"


def settings(kind: str, workdir: str) -> dict[str, object]:
    common: dict[str, object] = {
        "name": f"bench-{kind}-{os.getpid()}",
        "secret_key": "bench",
        "workers": 2,
        "bulk": 100,
        "queue_limit": 1000,
        "save_limit": 0,
        "guard_cycle": 0.5,
        "poll": 0.01,
    }
    sqlite = f"sqlite:///{workdir}/bench-{kind}.sqlite3"
    if kind == "redis":
        return {**common, "broker": REDIS_URL, "store": sqlite}
    if kind == "sqlite":
        return {**common, "store": sqlite}
    return {**common, "store": POSTGRES_URL}


class ClusterRun:
    """A qcluster subprocess and a thread sampling its memory (with its workers)."""

    def __init__(self, config: qengine.Config, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
        for key, value in config.as_dict(masked=False).items():
            if value is not None and not isinstance(value, dict):
                env[f"QENGINE_{key.upper()}"] = str(value)
        env["PYTHONPATH"] = str(ROOT)
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qengine.cli", "--log-level", "WARNING"],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.peak_kb = 0  # proportional set size: shared pages counted once
        self.peak_rss_kb = 0  # resident set sizes added up: forkserver pages counted per worker
        self._sampling = True
        # A pass reads smaps of every process (~8 ms of CPU here): fine for throughput,
        # but it would land inside round trips, so (c) samples once a second.
        self.interval = 0.1
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._sampling:
            try:
                root = psutil.Process(self.process.pid)
                procs = [root, *root.children(recursive=True)]
                infos = [p.memory_full_info() for p in procs if p.is_running()]
                self.peak_kb = max(self.peak_kb, sum(i.pss for i in infos) // 1024)
                self.peak_rss_kb = max(self.peak_rss_kb, sum(i.rss for i in infos) // 1024)
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def stop(self) -> None:
        self._sampling = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def wait_ready(config: qengine.Config, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.status in {"Idle", "Working"} for s in qengine.status.Stat.get_all(config)):
            return
        time.sleep(0.01)
    raise SystemExit("cluster did not start")


def stored(config: qengine.Config) -> int:
    with get_store(config).engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(TaskRow)) or 0)


def wait_stored(config: qengine.Config, count: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while stored(config) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {stored(config)} of {count} results after {timeout}s")
        time.sleep(0.02)  # a count(*) per look: looking more often slows what it measures
    return time.perf_counter()


def clean(config: qengine.Config) -> None:
    broker = qengine.get_broker()
    broker.purge_queue()
    with get_store(config).engine.begin() as conn:
        conn.execute(sa.delete(TaskRow))


def note(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


def bench(kind: str, n: int, workdir: str) -> dict[str, float]:
    config = qengine.configure(**settings(kind, workdir))
    clean(config)
    broker = qengine.get_broker()
    figures: dict[str, float] = {}

    # (a) drain a backlog queued before the cluster starts
    signer = qengine.signing.get_signer(config)
    from qengine.task import TaskMessage, new_id

    packages = []
    for _ in range(n):
        task_id, name = new_id()
        packages.append(signer.dumps(TaskMessage(id=task_id, name=name, func=NOOP)))
    for start in range(0, n, 1000):
        broker.enqueue_many(packages[start : start + 1000])
    run = ClusterRun(config, Path(workdir) / f"{kind}-cluster.log")
    try:
        wait_ready(config)
        note(f"{kind}: cluster ready, draining {n}")
        began = time.perf_counter()
        figures["drain_per_s"] = n / (wait_stored(config, n) - began)

        # (b) one producer, async_task per task
        note(f"{kind}: end to end")
        clean(config)
        began = time.perf_counter()
        for _ in range(n):
            qengine.async_task(NOOP, broker=broker)
        figures["enqueue_per_s"] = n / (time.perf_counter() - began)
        figures["end_to_end_per_s"] = n / (wait_stored(config, n) - began)

        # (c) round trips, one at a time
        note(f"{kind}: round trips")
        clean(config)
        run.interval = 1.0
        times = []
        for _ in range(500):
            began = time.perf_counter()
            task_id = qengine.async_task(NOOP, broker=broker)
            qengine.fetch(task_id, wait=-1)
            times.append((time.perf_counter() - began) * 1000)
        times.sort()
        figures["rtt_p50_ms"] = statistics.median(times)
        figures["rtt_p99_ms"] = times[int(len(times) * 0.99) - 1]
    finally:
        run.stop()
        clean(config)
        broker.delete_queue()  # each run's cluster name is its own: leave no queue behind
    figures["peak_mb"] = run.peak_kb / 1024
    figures["peak_rss_mb"] = run.peak_rss_kb / 1024
    return figures


def machine_reference() -> str:
    """Two figures that scale with the machine, to compare runs on different ones.

    The targets were set where a Redis command from Python took ~115 µs; on a
    slower (or busier) machine every figure above moves with these.
    """
    import timeit

    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    ping_us = min(timeit.repeat(client.ping, number=500, repeat=3)) / 500 * 1e6
    client.close()
    loop_us = min(timeit.repeat("sum(range(1000))", number=2000, repeat=3)) / 2000 * 1e6
    return f"machine: Redis PING from Python {ping_us:.0f} µs, sum(range(1000)) {loop_us:.1f} µs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("brokers", nargs="*", default=["redis", "sqlite", "postgres"])
    parser.add_argument("-n", type=int, default=10_000, help="tasks for (a) and (b)")
    parser.add_argument(
        "-r", "--repeat", type=int, default=1,
        help="runs per broker: on a shared or virtual machine one run can be off by 30%%",
    )  # fmt: skip
    args = parser.parse_args()
    print(machine_reference(), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        print(f"{'broker':10} {'drain/s':>9} {'e2e/s':>9} {'enq/s':>9} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'PSS MB':>8} {'RSS MB':>8}")  # fmt: skip
        for kind in [k for k in args.brokers for _ in range(args.repeat)]:
            f = bench(kind, args.n, workdir)
            print(
                f"{kind:10} {f['drain_per_s']:9.0f} {f['end_to_end_per_s']:9.0f} "
                f"{f['enqueue_per_s']:9.0f} {f['rtt_p50_ms']:8.2f} {f['rtt_p99_ms']:8.2f} "
                f"{f['peak_mb']:8.1f} {f['peak_rss_mb']:8.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
