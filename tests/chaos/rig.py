"""One chaos run's rig: its servers, store schema, ledger, clusters, producer and progress samples.

``bench/chaos.py`` builds its scenarios on ``Run``; the tests run those
scenarios. Everything a ``Run`` makes is removed when its ``with`` block
ends: clusters killed by pid, the private Redis stopped, the proxy closed,
the store's schema dropped, the ledger's keys deleted.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import sqlalchemy as sa

import qengine
import qengine.runtime
import qengine.store
from bench.chaos_tasks import Ledger
from qengine.db import TaskRow
from tests.chaos.servers import PrivateRedis, TcpProxy
from tests.processes import ROOT, ClusterProcess

__all__ = ["POSTGRES_URL", "RECORD", "REDIS_URL", "SLOT", "SUICIDE", "Plan", "Producer", "Run"]

REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The shared Redis: it holds the ledgers, and the chaos never touches it."""
POSTGRES_URL = os.environ.get(
    "QENGINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RECORD = "bench.chaos_tasks.record"
SUICIDE = "bench.chaos_tasks.suicide"
SLOT = "bench.chaos_tasks.slot"
RATE = 300.0
"""Default pace of the producer (enqueues per second)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Sizes and timings of the runs; ``ci()`` is the short version the tests use."""

    tasks: int = 1000
    """Ordinary tasks per run."""
    task_ms: float = 5.0
    """How long each task works: long enough for kills to land inside tasks."""
    rate: float = RATE
    """Most enqueues per second: the producer paces itself so faults meet a steady flow."""
    window_s: float = 6.0
    """Production lasts at least this long; the scenario's faults fall inside it."""
    faults: int = 3
    """Cluster kills and broker restarts per run."""
    stops: int = 2
    """SIGTERMs in the sigterm run (each followed by a restart)."""
    outage_s: float = 10.0
    """How long the store's database stays unreachable."""
    retry: float = 3.0
    """The lease (``retry``): short, so the work of a dead cluster comes back fast."""
    workers: int = 2
    """Workers per cluster (the schedules run's three clusters have one each)."""
    slots: int = 60
    """ONCE schedules in the schedules run."""
    slot_gap_s: float = 0.2
    """Seconds between two slots."""
    suicides: int = 3
    """Tasks that kill their own worker, in the suicide run."""
    max_attempts: int = 3
    """``max_attempts`` of the suicide run's cluster."""
    seed: int | None = None
    """Seed of the random faults (None: a new one each run)."""

    @classmethod
    def ci(cls, tasks: int = 60) -> Plan:
        """Small: every scenario on both brokers in about two minutes on two cores.

        Tasks work 40 ms so two workers are busy most of the time at this pace and kills
        land inside tasks; the store outage is 3 s instead of 10; one SIGTERM.
        """
        return cls(
            tasks=tasks, task_ms=40.0, rate=tasks / 2.5, window_s=2.5, faults=2, stops=1,
            outage_s=3.0, slots=20, slot_gap_s=0.1, suicides=2,
        )  # fmt: skip

    @classmethod
    def long(cls, tasks: int, **changes: object) -> Plan:
        window_s = max(6.0, tasks / RATE)
        values: dict[str, object] = {
            "tasks": tasks,
            "window_s": window_s,
            "faults": max(3, int(window_s // 10)),
            "slots": max(60, tasks // 20),
            "suicides": max(3, tasks // 1000),
        }
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def production_s(self) -> float:
        return max(self.window_s, self.tasks / self.rate)


@dataclass(slots=True)
class Sample:
    """Progress at one moment: from the ledger, the store, and what was expected by then."""

    at: float
    executions: int
    distinct: int
    rows: int
    expected: int


class Producer(threading.Thread):
    """Calls ``async_task`` for each ``(number, func)`` at most ``rate`` times a second.

    ``ids`` keeps the tasks whose ``async_task`` returned: only those count as
    enqueued. A call that raises is not repeated (its number could then run
    twice for one reason the checker cannot tell from another); the producer
    waits 0.1 s and goes on, without rushing to catch up afterwards.
    """

    def __init__(self, run: Run, items: list[tuple[int, str]], rate: float) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.chaos_run = run
        self.items = items
        self.rate = rate
        self.ids: dict[int, str] = {}
        self.refused: list[int] = []
        self.errors: set[str] = set()
        """Kinds of the exceptions ``async_task`` raised."""
        self.finished_at = 0.0

    def run(self) -> None:
        run = self.chaos_run
        next_at = time.monotonic()
        for number, func in self.items:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic()) + 1 / self.rate
            args: tuple[object, ...] = (REDIS_URL, run.key, number)
            if func == RECORD:
                args += (run.plan.task_ms,)
            try:
                self.ids[number] = qengine.async_task(func, *args)
            except Exception as exc:  # an outage: this one was not enqueued
                self.refused.append(number)
                self.errors.add(type(exc).__name__)
                time.sleep(0.1)
        self.finished_at = time.monotonic()


class Run:
    """One scenario on one broker, with everything it owns; all of it removed on exit.

    Redis runs get a private ``redis-server`` (``persistent``: AOF, fsync
    always); every run gets a schema of its own in the shared PostgreSQL
    ``test`` database for its store (and, on PostgreSQL, its broker),
    reached through a ``TcpProxy`` when ``proxy`` is set so it can be cut.
    """

    def __init__(
        self,
        scenario: str,
        broker: str,
        plan: Plan,
        workdir: Path,
        *,
        persistent: bool = True,
        proxy: bool = False,
    ) -> None:
        self.scenario = scenario
        self.broker_kind = broker
        self.plan = plan
        self.rng = random.Random(plan.seed)
        tag = uuid.uuid4().hex[:8]
        self.id = f"{scenario}-{broker}-{tag}"
        self.name = f"chaos-{self.id}"
        self.key = f"chaos:{self.id}"
        self.schema = f"chaos_{scenario.replace('-', '_')}_{broker}_{tag}"
        self.workdir = workdir / self.id
        self.workdir.mkdir(parents=True)
        self.persistent = persistent
        self.use_proxy = proxy
        self.proxy: TcpProxy | None = None
        self.redis: PrivateRedis | None = None
        self.clusters: list[ClusterProcess] = []
        self.producers: list[Producer] = []
        self.samples: list[Sample] = []
        self.fault_ends: list[Sample] = []
        self.due_at: list[float] = []
        """Monotonic times at which schedule slots fall due (they count as expected then)."""
        self._stack = contextlib.ExitStack()
        self._sampling = threading.Event()

    # -- setting up and tearing down ------------------------------------------------------

    def __enter__(self) -> Run:
        stack = self._stack
        try:
            admin = sa.create_engine(
                POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
            )
            stack.callback(admin.dispose)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
            stack.callback(self._drop_schema, admin)
            self.ledger = Ledger(REDIS_URL, self.key)
            stack.callback(self.ledger.close)
            stack.callback(self.ledger.delete)
            if self.use_proxy:
                target = sa.make_url(POSTGRES_URL)
                self.proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
                stack.callback(self.proxy.close)
            if self.broker_kind == "redis":
                self.redis = PrivateRedis(self.workdir / "redis", persistent=self.persistent)
                stack.callback(self.redis.stop)
                self.redis.start()
            self.checker = sa.create_engine(self.store_url(direct=True), poolclass=sa.pool.NullPool)
            stack.callback(self.checker.dispose)
            stack.callback(self._kill_clusters)
            self.config = qengine.configure(**self.keys())
            # Forget the run's configuration at the end, closing its connections before the drop.
            stack.callback(qengine.runtime.reset)
            self.broker = qengine.get_broker()
            qengine.runtime.get_store(self.config).count()  # the tables exist before anyone looks
            threading.Thread(target=self._sample_loop, name="chaos-sampler", daemon=True).start()
            stack.callback(self._sampling.set)
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _drop_schema(self, admin: sa.Engine) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def _kill_clusters(self) -> None:
        # Killed, not stopped: everything was checked already, and a clean stop is the sigterm
        # run's business (it would cost every other run a second of teardown).
        for cluster in self.clusters:
            cluster.kill()

    def store_url(self, *, direct: bool = False) -> str:
        url = sa.make_url(POSTGRES_URL)
        if self.proxy is not None and not direct:
            url = url.set(host="127.0.0.1", port=self.proxy.port)
        url = url.update_query_dict({"options": f"-csearch_path={self.schema}"})
        return url.render_as_string(hide_password=False)

    def keys(self, **overrides: object) -> dict[str, object]:
        """The cluster keys of this run (the producer's too), plus ``overrides``."""
        keys: dict[str, object] = {
            "name": self.name,
            "secret_key": f"chaos-{self.id}",
            "workers": self.plan.workers,
            "retry": self.plan.retry,
            "save_limit": 0,  # keep every result: the checker counts them
            "guard_cycle": 0.2,
            "poll": 0.05,
            "store": self.store_url(),
        }
        if self.redis is not None:
            keys["broker"] = self.redis.url
        keys.update(overrides)
        return keys

    # -- clusters --------------------------------------------------------------------

    def start_cluster(self, *, wait: bool = True, **overrides: object) -> ClusterProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
        env["PYTHONPATH"] = str(ROOT)
        for key, value in self.keys(**overrides).items():
            env[f"QENGINE_{key.upper()}"] = str(value)
        log = self.workdir / f"cluster-{len(self.clusters)}.log"
        cluster = ClusterProcess(env, log, ["--log-level", "INFO"])
        self.clusters.append(cluster)
        if wait:
            cluster.wait_running(60)
        return cluster

    def random_worker(self, cluster: ClusterProcess, wait_s: float = 2.0) -> int | None:
        """A worker of ``cluster`` alive now, or None if none shows up within ``wait_s``.

        The cluster publishes its workers once a second, so after a pool replacement the
        list names dead ones for a while: only pids alive in its process tree count. When
        the status cannot be read (it lives in the store on PostgreSQL, which may be cut
        off), the workers are the grandchildren: the cluster's children are the forkserver
        and the resource tracker.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                family = psutil.Process(cluster.pid).children(recursive=True)
            except psutil.Error:  # the cluster is gone
                return None
            try:
                alive = {p.pid for p in family}
                pids = [pid for pid in cluster.worker_pids(self.config) if pid in alive]
            except Exception:  # its status is unreadable right now
                pids = [p.pid for p in family if _ppid(p) != cluster.pid]
            if pids:
                return self.rng.choice(pids)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def kill_worker(self, cluster: ClusterProcess) -> int:
        """SIGKILL a random worker of ``cluster``; return how many were killed (0 or 1)."""
        pid = self.random_worker(cluster)
        if pid is None:
            return 0
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return 0
        return 1

    # -- producing --------------------------------------------------------------------

    def produce(
        self,
        numbers: range | list[int] = (),  # type: ignore[assignment]
        *,
        func: str = RECORD,
        items: list[tuple[int, str]] | None = None,
        rate: float | None = None,
        span_s: float | None = None,
    ) -> Producer:
        """Start a producer of ``items`` (or ``numbers`` of ``func``) over ``span_s`` seconds.

        The pace is ``rate``, else what spreads the items over ``span_s``, else over
        the plan's production window.
        """
        items = items if items is not None else [(n, func) for n in numbers]
        if rate is None:
            rate = max(len(items) / (span_s or self.plan.production_s), 1.0)
        producer = Producer(self, items, rate)
        self.producers.append(producer)
        producer.start()
        return producer

    def enqueued(self) -> dict[int, str]:
        """Task number → id, of every task whose ``async_task`` returned."""
        ids: dict[int, str] = {}
        for producer in self.producers:
            ids.update(producer.ids)
        return ids

    def producing(self) -> bool:
        return any(p.is_alive() for p in self.producers)

    def production_end(self) -> float:
        return max((p.finished_at for p in self.producers), default=time.monotonic())

    # -- watching ----------------------------------------------------------------------

    def rows(self) -> int:
        with self.checker.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(TaskRow)) or 0)

    def sample(self) -> Sample:
        executions, distinct = self.ledger.progress()
        now = time.monotonic()
        expected = sum(len(p.ids) for p in self.producers) + bisect.bisect(self.due_at, now)
        return Sample(now, executions, distinct, self.rows(), expected)

    def _sample_loop(self) -> None:
        while not self._sampling.wait(0.05):
            with contextlib.suppress(Exception):  # a sample missed is a sample missed
                self.samples.append(self.sample())

    def fault_end(self) -> None:
        """The fault is over now: recovery is measured from here."""
        self.fault_ends.append(self.sample())

    def fault_times(self, began: float, count: int | None = None) -> list[float]:
        """``count`` moments spread evenly over the production window, away from its ends."""
        count = count or self.plan.faults
        span = self.plan.production_s
        return [began + span * (k + 1) / (count + 1) for k in range(count)]

    @staticmethod
    def sleep_until(moment: float) -> None:
        time.sleep(max(0.0, moment - time.monotonic()))

    def wait_busy(self, timeout_s: float = 1.0) -> bool:
        """Wait until some task enqueued so far is not stored yet; False if none in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = self.sample()
            if now.rows < now.expected:
                return True
            if now.at > deadline:
                return False
            time.sleep(0.01)

    def drained(self) -> bool:
        """Cheap look: production over and the counters reached what was enqueued."""
        if self.producing():
            return False
        now = self.sample()
        return now.distinct >= now.expected and now.rows >= now.expected

    def all_done(self) -> bool:
        """Every enqueued task executed and its result stored (the exact check)."""
        if not self.drained():
            return False
        enqueued = self.enqueued()
        if not set(enqueued) <= self.ledger.executed():
            return False
        with self.checker.connect() as conn:
            stored = set(conn.scalars(sa.select(TaskRow.id)))
        return set(enqueued.values()) <= stored

    def broker_empty(self) -> bool:
        try:
            return self.broker.queue_size() + self.broker.lock_size() == 0
        except Exception:
            return False

    def settle(self, done: Callable[[], bool], timeout_s: float | None = None) -> float:
        """Wait until ``done()``, or until nothing moved for a while with the broker empty.

        Returns when it stopped waiting. The quiet rule ends runs that lost tasks (with
        nothing queued or leased, only tasks a cluster holds in memory can still finish,
        within a task's time); the timeout, runs that hang.
        """
        timeout_s = timeout_s or 60 + self.plan.tasks * 0.02
        deadline = time.monotonic() + timeout_s
        quiet_s = 2.0
        last, last_change = (-1, -1), time.monotonic()
        while True:
            now = self.sample()
            if not self.producing() and done():
                return now.at
            if (now.executions, now.rows) != last:
                last, last_change = (now.executions, now.rows), now.at
            elif now.at - last_change > quiet_s and not self.producing() and self.broker_empty():
                return now.at
            if now.at > deadline:
                return now.at
            time.sleep(0.1)

    def recoveries(self) -> list[float | None]:
        """Per fault with work outstanding: seconds until that work moved again, else None.

        Work not yet run must see a new execution; results not yet stored, a new row.
        """
        self._sampling.set()
        # One last look: work that finished within a sampling interval of the fault's end
        # (a fast recovery) would otherwise leave no sample after it and read as no progress.
        with contextlib.suppress(Exception):
            self.samples.append(self.sample())
        found: list[float | None] = []
        for base in self.fault_ends:
            after = [s for s in self.samples if s.at > base.at]
            waits: list[float | None] = []
            if base.distinct < base.expected:
                waits.append(next((s.at for s in after if s.executions > base.executions), None))
            if base.rows < base.expected:
                waits.append(next((s.at for s in after if s.rows > base.rows), None))
            if not waits:
                continue  # nothing was waiting: nothing to recover
            ready = [w for w in waits if w is not None]
            found.append(max(ready) - base.at if len(ready) == len(waits) else None)
        return found

    def stored_rows(self) -> dict[str, tuple[bool, object]]:
        """Every row of the run's store: id → (success, result)."""
        with self.checker.connect() as conn:
            rows = conn.execute(sa.select(TaskRow.id, TaskRow.success, TaskRow.result)).all()
        return {row.id: (bool(row.success), qengine.store.loads(row.result)) for row in rows}


def _ppid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None
