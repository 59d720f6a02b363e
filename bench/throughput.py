"""Cluster throughput, latency and memory: prints figures, asserts nothing.

For each kind of run, with a real ``qcluster`` of 2 workers in a subprocess
and results saved in a SQL store:

  redis     Redis broker, SQLite store
  defaults  the same with the shipped defaults: only workers (2), save_limit
            (0, to count rows) and the key set; bulk, queue_limit, poll and
            guard_cycle as a new user gets them
  embedded  SQL broker and store on one SQLite file, shipped defaults
  sqlite    SQL broker and store on SQLite
  postgres  SQL broker and store on PostgreSQL (database ``test``)
  redis-pg  Redis broker, PostgreSQL store through a SQLAlchemy URL, in a
            database made for the run and dropped after it
  django    the same under Django: ``python -m django qcluster`` with
            ``bench.django_settings``, the store the Django database (tables
            made by ``migrate``), reached through Django's connections
  django-tuned  django with the database options that let PostgreSQL plan
            the store's upsert once per connection instead of once per row:
            CONN_MAX_AGE 600, server_side_binding, prepare_threshold 5
            (Django's defaults: 0, client-side binding, never prepare)
  django-vs-plain   redis-pg and django, one after the other per repeat, then
            their medians and the ratios django/plain (the target: ≥ 0.80)

The django run's producer is this process with the plain engine API (same
name, secret key and broker: the package format is the same), and it counts
results in the Django database through SQLAlchemy. Both runs use the same
cluster keys (``settings()``); Django adds its own ``cache`` (the default
cache), which no task here uses.

Figures:

  (a) drain: 10,000 no-op tasks queued first, then the cluster starts;
      from "running" to the last result stored, rating only what was left
      at "running";
  (b) end to end: one producer calling ``async_task`` per task, from the
      first enqueue to the last result stored;
  (c) round trip: one task at a time, ``async_task`` then ``result(wait=-1)``,
      p50 and p99 over 500 tasks;
  (d) peak memory of the cluster process and its children (forkserver,
      workers, resource tracker): the proportional set size (PSS), which
      counts pages the workers share with the forkserver once, and for
      comparison the plain sum of resident set sizes (RSS), which counts
      them once per process.

Usage: ``.venv/bin/python bench/throughput.py [redis] [defaults] [embedded] [sqlite] [postgres]
[redis-pg] [django]
[django-tuned] [django-vs-plain] [-n 10000] [-r 1]``; the django run's database options
can also be set one by one in the environment (``bench/django_settings.py`` lists them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402

import qengine  # noqa: E402
import qengine.runtime  # noqa: E402
import qengine.status  # noqa: E402
from qengine.db import TaskRow  # noqa: E402
from qengine.runtime import get_store  # noqa: E402

REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "QENGINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOOP = "bench.tasks.noop"
PLAIN = "redis-pg"
DJANGO = "django"
TUNED = "django-tuned"
DJANGO_KINDS = (DJANGO, TUNED)
PAIR = "django-vs-plain"
DEFAULTS = ("defaults", "embedded")
"""Kinds run with the shipped defaults: only workers, save_limit (to count rows) and the key."""
KINDS = ("redis", "sqlite", "postgres", PLAIN, DJANGO, TUNED, PAIR, *DEFAULTS)
TUNING = {
    "BENCH_CONN_MAX_AGE": "600",
    "BENCH_SERVER_SIDE_BINDING": "1",
    "BENCH_PREPARE_THRESHOLD": "5",
}
"""bench.django_settings' variables for django-tuned (see there)."""
TARGET_RATIO = 0.80


def settings(kind: str, workdir: str, database_url: str | None = None) -> dict[str, object]:
    """The cluster keys of a run; ``database_url``: the PostgreSQL store of redis-pg, django."""
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
    if kind in DEFAULTS:
        shipped = {key: common[key] for key in ("name", "secret_key", "workers", "save_limit")}
        broker = {"broker": REDIS_URL} if kind == "defaults" else {}
        return {**shipped, **broker, "store": sqlite}
    if kind == "redis":
        return {**common, "broker": REDIS_URL, "store": sqlite}
    if kind == "sqlite":
        return {**common, "store": sqlite}
    if kind in (PLAIN, *DJANGO_KINDS):
        assert database_url is not None
        return {**common, "broker": REDIS_URL, "store": database_url}
    return {**common, "store": POSTGRES_URL}


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def engine_command(config: qengine.Config) -> tuple[list[str], dict[str, str]]:
    """The plain engine's ``qcluster``, configured through ``QENGINE_*`` variables."""
    env = base_env()
    for key, value in config.as_dict(masked=False).items():
        if value is not None and not isinstance(value, dict):
            env[f"QENGINE_{key.upper()}"] = str(value)
    return [sys.executable, "-m", "qengine.cli", "--log-level", "WARNING"], env


def django_env(keys: dict[str, object], *, tuned: bool = False) -> dict[str, str]:
    """Environment of ``python -m django`` with ``bench.django_settings`` for these cluster keys.

    ``keys['store']`` (a SQLAlchemy URL) becomes ``DATABASES['default']``;
    the other keys are ``Q_CLUSTER``, whose store is then that database.
    """
    url = sa.make_url(str(keys["store"]))
    database = {
        "NAME": url.database, "USER": url.username or "", "PASSWORD": url.password or "",
        "HOST": url.host or "", "PORT": str(url.port or ""),
    }  # fmt: skip
    env = base_env()
    env["DJANGO_SETTINGS_MODULE"] = "bench.django_settings"
    env["BENCH_DJANGO_DATABASE"] = json.dumps(database)
    env["BENCH_Q_CLUSTER"] = json.dumps({k: v for k, v in keys.items() if k != "store"})
    if tuned:
        env.update(TUNING)
    return env


def django_command(
    keys: dict[str, object], *, tuned: bool = False
) -> tuple[list[str], dict[str, str]]:
    """``python -m django qcluster`` for these keys, after ``migrate qdjango`` made its tables."""
    env = django_env(keys, tuned=tuned)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "qdjango", "--verbosity", "0"],
        env=env, check=True,
    )  # fmt: skip
    return [sys.executable, "-m", "django", "qcluster", "--log-level", "WARNING"], env


@contextmanager
def own_database(kind: str) -> Iterator[str]:
    """A PostgreSQL database made for one run and dropped after it; yields its URL.

    ``test``'s other users (test suites, other benchmarks) never see the run's rows.
    """
    base = sa.make_url(POSTGRES_URL)
    name = f"bench_{kind.replace('-', '_')}_{os.getpid()}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            # FORCE ends the connections still open to it (the store's pool in this process).
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


class ClusterRun:
    """A qcluster subprocess and a thread sampling its memory (with its workers)."""

    def __init__(self, command: tuple[list[str], dict[str, str]], log: Path) -> None:
        argv, env = command
        self.log = log
        self.process = subprocess.Popen(
            argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
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


def wait_ready(config: qengine.Config, run: ClusterRun, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.status in {"Idle", "Working"} for s in qengine.status.Stat.get_all(config)):
            return
        if run.process.poll() is not None:
            raise SystemExit(f"cluster exited with {run.process.returncode}: see {run.log}\n"
                             + run.log.read_text()[-3000:])  # fmt: skip
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
    if kind not in (PLAIN, *DJANGO_KINDS):
        return bench_with(kind, n, workdir, None)
    with own_database(kind) as url:
        return bench_with(kind, n, workdir, url)


def bench_with(kind: str, n: int, workdir: str, database_url: str | None) -> dict[str, float]:
    keys = settings(kind, workdir, database_url)
    # Django's migrations make its tables before this process's store would make its own.
    command = django_command(keys, tuned=kind == TUNED) if kind in DJANGO_KINDS else None
    config = qengine.configure(**keys)
    command = command or engine_command(config)
    clean(config)
    broker = qengine.get_broker()
    figures: dict[str, float] = {}

    # (a) drain a backlog queued before the cluster starts
    signer = qengine.runtime.get_signer(config)
    from qengine.task import TaskMessage, new_id

    packages = []
    for _ in range(n):
        task_id, name = new_id()
        packages.append(signer.dumps(TaskMessage(id=task_id, name=name, func=NOOP)))
    for start in range(0, n, 1000):
        broker.enqueue_many(packages[start : start + 1000])
    run = ClusterRun(command, Path(workdir) / f"{kind}-cluster.log")
    try:
        wait_ready(config, run)
        began = time.perf_counter()
        # The cluster starts its pusher before it publishes its first status, so it may
        # have saved part of the backlog before it is seen ready: rate only what is left.
        already = stored(config)
        note(f"{kind}: cluster ready, draining {n - already} ({already} saved before ready)")
        figures["drain_per_s"] = (n - already) / (wait_stored(config, n) - began)

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
        get_store(config).engine.dispose()  # before its database may be dropped
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


def run_order(kinds: list[str], repeat: int) -> list[str]:
    """Each repeat runs every kind once, so a drift of the machine's load touches all alike."""
    expanded = [k for kind in kinds for k in ((PLAIN, DJANGO) if kind == PAIR else (kind,))]
    return [kind for _ in range(repeat) for kind in expanded]


def print_ratios(results: dict[str, list[dict[str, float]]]) -> None:
    """Medians of redis-pg and each Django kind, and django/plain for drain and end to end."""
    for kind in DJANGO_KINDS:
        if not (results.get(PLAIN) and results.get(kind)):
            continue
        print(f"{kind}/plain (medians of {len(results[kind])} and {len(results[PLAIN])} runs; "
              f"target ≥ {TARGET_RATIO:.2f}):")  # fmt: skip
        for figure, label in (("drain_per_s", "drain"), ("end_to_end_per_s", "end to end")):
            plain = statistics.median(f[figure] for f in results[PLAIN])
            django = statistics.median(f[figure] for f in results[kind])
            ratio = django / plain
            verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
            print(f"  {label:11} plain {plain:7.0f}/s  {kind} {django:7.0f}/s  "
                  f"ratio {ratio:5.2f}  {verdict}", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No choices=: argparse (3.11) would check the default list against them as one value.
    parser.add_argument(
        "brokers", nargs="*", default=["redis", "sqlite", "postgres"], metavar="kind",
        help=f"runs: {', '.join(KINDS)} (default: redis sqlite postgres)",
    )  # fmt: skip
    parser.add_argument("-n", type=int, default=10_000, help="tasks for (a) and (b)")
    parser.add_argument(
        "-r", "--repeat", type=int, default=1,
        help="runs per kind: on a shared or virtual machine one run can be off by 30%%",
    )  # fmt: skip
    args = parser.parse_args()
    unknown = [kind for kind in args.brokers if kind not in KINDS]
    if unknown:
        parser.error(f"unknown kind {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    print(machine_reference(), flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load} on {os.cpu_count()} CPUs", flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        print(f"{'kind':12} {'drain/s':>9} {'e2e/s':>9} {'enq/s':>9} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'PSS MB':>8} {'RSS MB':>8}")  # fmt: skip
        for kind in run_order(args.brokers, args.repeat):
            f = bench(kind, args.n, workdir)
            results.setdefault(kind, []).append(f)
            print(
                f"{kind:12} {f['drain_per_s']:9.0f} {f['end_to_end_per_s']:9.0f} "
                f"{f['enqueue_per_s']:9.0f} {f['rtt_p50_ms']:8.2f} {f['rtt_p99_ms']:8.2f} "
                f"{f['peak_mb']:8.1f} {f['peak_rss_mb']:8.1f}",
                flush=True,
            )
    print_ratios(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
