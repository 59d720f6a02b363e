"""One small driver class per system: enqueue, batch enqueue, workers, counting, waiting.

A driver runs in its system's virtual environment (qengine's in the project's
.venv, the peers' in bench/peers/.venv), so each imports its library only when
built. Every driver counts finished tasks where the system stores results,
never with a counter of our own, so a figure is "results stored", as a caller
would see them.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import procs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class Context:
    """What one run of one system gets: its names, its Redis databases and its folder."""

    workload: str
    name: str
    """Unique per run: the queue or cluster name, so no leftover of another run is seen."""
    broker_url: str
    result_url: str
    """A Redis database of its own: systems storing results there are counted with DBSIZE."""
    workdir: Path
    payload: str

    @property
    def func(self) -> str:
        return "realistic" if self.workload == "realistic" else "noop"

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.payload,) if self.workload == "realistic" else ()

    def env(self) -> dict[str, str]:
        """What the ``tasks_*`` modules read, in the driver and in the workers alike."""
        return {
            "PEERS_NAME": self.name,
            "PEERS_BROKER_URL": self.broker_url,
            "PEERS_RESULT_URL": self.result_url,
            "PEERS_DIR": str(self.workdir),
        }


class System:
    """The shape every driver has; the runner's phases call only these methods."""

    name: ClassVar[str]
    package: ClassVar[str]
    """The distribution whose version the report names."""
    batch_api: ClassVar[str | None] = None
    """The batch enqueue call this system offers (None: it has none)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.workers: list[subprocess.Popen[bytes]] = []

    # -- the producer side ------------------------------------------------------------

    def setup(self) -> None:
        """Anything the system needs before its first enqueue (tables, a declared queue)."""

    def enqueue(self) -> Any:
        """Queue one task of the workload; return what ``wait_result`` needs."""
        raise NotImplementedError

    def enqueue_batch(self, n: int) -> None:
        """Queue ``n`` tasks with the system's batch call (only when ``batch_api``)."""
        raise NotImplementedError

    def purge(self) -> None:
        """Drop everything queued (the batch phase's tasks), with the system's own call."""
        raise NotImplementedError

    def count_done(self) -> int:
        """How many results the system has stored."""
        raise NotImplementedError

    def wait_result(self, handle: Any, timeout: float) -> Any:
        """Block on the system's own result API until the task's result is there."""
        raise NotImplementedError

    # -- the workers ------------------------------------------------------------------

    def worker_commands(self) -> list[list[str]]:
        """One command per worker process the system's docs would have you start."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
        env.update(self.ctx.env(), PYTHONPATH=str(HERE))
        return env

    def worker_cwd(self) -> Path:
        return HERE

    def start_workers(self, log: Path, record: Path | None = None) -> None:
        """Start the workers, each as the leader of its own process group, logging to ``log``."""
        for argv in self.worker_commands():
            process = procs.spawn_group(argv, env=self.worker_env(), cwd=self.worker_cwd(), log=log)
            self.workers.append(process)
            if record is not None:
                procs.record_group(record, process.pid)

    def stop_workers(self) -> None:
        for process in self.workers:
            procs.stop_tree(process)
        self.workers.clear()

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.workers]

    def check_workers(self) -> None:
        """Raise when a worker process has exited: waiting for its results would be in vain."""
        for process in self.workers:
            if process.poll() is not None:
                code = process.returncode
                raise RuntimeError(f"{self.name}: worker {process.pid} exited ({code})")

    def close(self) -> None:
        """Release the producer's connections."""


def _bin(tool: str) -> str:
    """A console script of this virtual environment (its bin folder holds the interpreter)."""
    return str(Path(sys.executable).parent / tool)


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


# -- qengine ----------------------------------------------------------------------------


BATCH = 1000
"""Tasks per ``async_tasks`` call in qengine's batch phase."""


class QEngine(System):
    """qengine with its shipped defaults: the real cluster, configured by environment only."""

    name = "qengine"
    package = "qengine"
    batch_api = "async_tasks()"
    tuning: ClassVar[dict[str, str]] = {}
    unset: ClassVar[frozenset[str]] = frozenset()
    """Variables of the common set left out, so that qengine's own default applies."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.store_path = ctx.workdir / "store.sqlite3"
        keys = {
            "QENGINE_BROKER": ctx.broker_url,
            "QENGINE_STORE": f"sqlite:///{self.store_path}",
            "QENGINE_SECRET_KEY": "bench-peers",
            "QENGINE_WORKERS": "2",
            "QENGINE_SAVE_LIMIT": "0",
            "QENGINE_NAME": ctx.name,
            **self.tuning,
        }
        self.keys = {key: value for key, value in keys.items() if key not in self.unset}
        sys.path.insert(0, str(ROOT))
        import qengine

        self.qengine = qengine
        # The producer reads the same variables the cluster does, parsed the same way.
        qengine.configure(qengine.load_config(environ=self.keys))
        self.func = f"bench.peers.tasks_qengine.{ctx.func}"
        self._db: sqlite3.Connection | None = None

    def enqueue(self) -> Any:
        return self.qengine.async_task(self.func, *self.ctx.args)

    def enqueue_batch(self, n: int) -> None:
        call = (self.func, self.ctx.args)
        for start in range(0, n, BATCH):  # batches of 1,000, as a producer would send them
            self.qengine.async_tasks([call] * min(BATCH, n - start))

    def purge(self) -> None:
        broker = self.qengine.get_broker()
        broker.purge_queue()
        # A purge that left the batch's tasks would have the drain count them as its own.
        left = broker.queue_size() + broker.lock_size()
        if left:
            raise RuntimeError(f"{self.name}: {left} tasks still queued after the purge")

    def count_done(self) -> int:
        # One count(*) on the store's file: with save_limit 0 every result is a row there.
        if self._db is None:
            if not self.store_path.exists():
                return 0
            self._db = sqlite3.connect(self.store_path, timeout=10)
        try:
            return int(self._db.execute("SELECT count(*) FROM q_task").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise

    def wait_result(self, handle: Any, timeout: float) -> Any:
        return self.qengine.result(handle, wait=int(timeout * 1000))

    def worker_commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", "qengine.cli", "--log-level", "WARNING"]]

    def worker_env(self) -> dict[str, str]:
        from bench.throughput import base_env  # no QENGINE_* or DJANGO_* leaks in; PYTHONPATH

        return {**base_env(), **self.keys}

    def worker_cwd(self) -> Path:
        return ROOT

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class QEngineTuned(QEngine):
    """qengine with the settings bench/throughput.py uses: 100 per fetch, 1000 held, 10 ms poll."""

    name = "qengine-tuned"
    tuning: ClassVar[dict[str, str]] = {
        "QENGINE_BULK": "100",
        "QENGINE_QUEUE_LIMIT": "1000",
        "QENGINE_POLL": "0.01",
    }


class QEngineEmbedded(QEngine):
    """qengine with no broker set: queue and results in one SQLite file (the embedded default).

    What a user who configures only a store gets: the SQL broker on the store's
    database, polling it every ``poll`` (0.2 s) once the queue has been empty a while.
    """

    name = "qengine-embedded"
    unset: ClassVar[frozenset[str]] = frozenset({"QENGINE_BROKER"})


class QEngineKeep250(QEngine):
    """qengine with ``save_limit`` at its default (250), counted by its Redis consumer group.

    Only the newest 250 successes stay as rows, so rows cannot count the
    tasks done. The cluster acknowledges a task only after its result is saved
    (monitor.py: save, then acknowledge), and acknowledging XACKs and XDELs the
    entry in one script; so the group's ``entries-read`` (entries ever
    delivered to it, a counter Redis 7 keeps) minus ``pending`` (delivered,
    not yet acknowledged) is the number of results saved, read in one command.
    """

    name = "qengine-keep250"
    unset: ClassVar[frozenset[str]] = frozenset({"QENGINE_SAVE_LIMIT"})

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        broker = self.qengine.get_broker()
        self.stream, self.group = broker.stream, broker.group  # the names the cluster uses
        self.redis = _redis(ctx.broker_url)

    def count_done(self) -> int:
        import redis

        try:
            groups = self.redis.xinfo_groups(self.stream)
        except redis.ResponseError as exc:
            if "no such key" in str(exc):  # nothing enqueued yet
                return 0
            raise
        for group in groups:
            if group["name"].decode() == self.group:
                read = group["entries-read"]
                if read is None and group["last-delivered-id"] != b"0-0":
                    # Redis could not keep the counter (an entry deleted before it was read):
                    # this count would be wrong, so the round fails rather than report it.
                    raise RuntimeError(f"{self.name}: {self.group} has lost its entries-read")
                return int(read or 0) - int(group["pending"])
        return 0  # the group is made on the first receive

    def close(self) -> None:
        super().close()
        self.redis.close()


# -- Huey -------------------------------------------------------------------------------


class Huey(System):
    """RedisHuey, ``huey_consumer -k process -w 2``; results in a Redis hash (HLEN counts)."""

    name = "huey"
    package = "huey"
    batch_api = None  # Task.map() enqueues one by one: no batch call
    notify = False

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        os.environ["PEERS_HUEY_NOTIFY"] = "1" if self.notify else "0"
        import tasks_huey

        self.mod = tasks_huey
        self.task = getattr(tasks_huey, ctx.func)

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "PEERS_HUEY_NOTIFY": "1" if self.notify else "0"}

    def enqueue(self) -> Any:
        return self.task(*self.ctx.args)

    def count_done(self) -> int:
        return int(self.mod.huey.result_count())

    def wait_result(self, handle: Any, timeout: float) -> Any:
        return handle.get(blocking=True, timeout=timeout)

    def worker_commands(self) -> list[list[str]]:
        return [[_bin("huey_consumer"), "tasks_huey.huey", "-k", "process", "-w", "2", "-q"]]


class HueyNotify(Huey):
    """Huey with ``notify_result=True``: a blocking get waits on a list, not by polling."""

    name = "huey-notify"
    notify = True


# -- Dramatiq ---------------------------------------------------------------------------


class Dramatiq(System):
    """``dramatiq --processes 2 --threads 1``, Results middleware with its Redis backend."""

    name = "dramatiq"
    package = "dramatiq"
    batch_api = "group(...).run()"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        import tasks_dramatiq

        self.mod = tasks_dramatiq
        self.actor = getattr(tasks_dramatiq, ctx.func)
        self.results = _redis(ctx.result_url)

    def enqueue(self) -> Any:
        return self.actor.send(*self.ctx.args)

    def enqueue_batch(self, n: int) -> None:
        from dramatiq import group

        group(self.actor.message(*self.ctx.args) for _ in range(n)).run()

    def purge(self) -> None:
        self.mod.broker.flush_all()

    def count_done(self) -> int:
        return int(self.results.dbsize())  # the backend's own database holds only results

    def wait_result(self, handle: Any, timeout: float) -> Any:
        return handle.get_result(block=True, timeout=int(timeout * 1000))

    def worker_commands(self) -> list[list[str]]:
        return [[_bin("dramatiq"), "tasks_dramatiq", "--processes", "2", "--threads", "1"]]


# -- Celery -----------------------------------------------------------------------------


class Celery(System):
    """Celery prefork ``-c 2``, Redis broker, Redis result backend in its own database."""

    name = "celery"
    package = "celery"
    batch_api = "group(...).apply_async()"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        import tasks_celery

        self.app = tasks_celery.app
        self.task = getattr(tasks_celery, ctx.func)
        self.results = _redis(ctx.result_url)

    def enqueue(self) -> Any:
        return self.task.delay(*self.ctx.args)

    def enqueue_batch(self, n: int) -> None:
        from celery import group

        group(self.task.s(*self.ctx.args) for _ in range(n)).apply_async()

    def purge(self) -> None:
        self.app.control.purge()

    def count_done(self) -> int:
        return int(self.results.dbsize())  # celery-task-meta-* keys only, in their own database

    def wait_result(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def worker_commands(self) -> list[list[str]]:
        return [[_bin("celery"), "-A", "tasks_celery", "worker", "-P", "prefork", "-c", "2",
                 "-l", "WARNING", "-n", f"{self.ctx.name}@%h"]]  # fmt: skip

    def close(self) -> None:
        self.app.close()


# -- RQ ---------------------------------------------------------------------------------


class RQ(System):
    """Two ``rq worker`` processes (the default Worker: a forked work horse per job)."""

    name = "rq"
    package = "rq"
    batch_api = "Queue.enqueue_many()"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        import tasks_rq
        from rq import Queue

        self.queue = Queue(ctx.name, connection=_redis(ctx.broker_url))
        self.func = getattr(tasks_rq, ctx.func)

    def enqueue(self) -> Any:
        return self.queue.enqueue(self.func, *self.ctx.args)

    def enqueue_batch(self, n: int) -> None:
        from rq import Queue

        self.queue.enqueue_many([Queue.prepare_data(self.func, self.ctx.args) for _ in range(n)])

    def purge(self) -> None:
        self.queue.empty()

    def count_done(self) -> int:
        # Jobs whose result was stored are in the finished registry (kept result_ttl, 500 s).
        return int(self.queue.finished_job_registry.count)

    def wait_result(self, handle: Any, timeout: float) -> Any:
        result = handle.latest_result(timeout=max(1, math.ceil(timeout)))
        return None if result is None else result.return_value

    def worker_commands(self) -> list[list[str]]:
        argv = [_bin("rq"), "worker", "-u", self.ctx.broker_url, "--logging_level", "WARNING",
                self.ctx.name]  # fmt: skip
        return [argv, list(argv)]


# -- django-q2 --------------------------------------------------------------------------


class DjangoQ2(System):
    """django-q2, ``python -m django qcluster``: 2 workers, Redis broker, SQLite, save_limit 0."""

    name = "django-q2"
    package = "django-q2"
    batch_api = None  # async_task only; async_iter is one task over many arguments
    settings: ClassVar[str] = "djq_settings"
    """The Django settings module of the producer and the cluster alike.

    One per system, as ``django.setup()`` takes one per process: each system's
    round runs in a driver process of its own, so they never meet.
    """

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
        import django

        django.setup()
        from django_q import tasks
        from django_q.models import Success

        self.tasks = tasks
        self.success = Success
        self.func = f"tasks_djq.{ctx.func}"

    def setup(self) -> None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def enqueue(self) -> Any:
        return self.tasks.async_task(self.func, *self.ctx.args)

    def count_done(self) -> int:
        return int(self.success.objects.count())

    def wait_result(self, handle: Any, timeout: float) -> Any:
        return self.tasks.result(handle, wait=int(timeout * 1000))

    def worker_commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", "django", "qcluster"]]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "DJANGO_SETTINGS_MODULE": self.settings}

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


class DjangoQ2Orm(DjangoQ2):
    """django-q2 with its ORM broker: the queue in the same SQLite file as the results.

    django-q2's closest match to qengine's embedded default; ``migrate`` makes
    its queue table (``django_q_ormq``) along with the others.
    """

    name = "django-q2-orm"
    settings: ClassVar[str] = "djq_orm_settings"


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (QEngine, QEngineTuned, QEngineEmbedded, QEngineKeep250, Huey,
                              HueyNotify, Dramatiq, Celery, RQ, DjangoQ2, DjangoQ2Orm)
}  # fmt: skip
"""Every system, in the order the report lists them."""

PROJECT_SYSTEMS = frozenset({"qengine", "qengine-tuned", "qengine-embedded", "qengine-keep250"})
"""Those whose driver runs in the project's .venv; the others in bench/peers/.venv."""
