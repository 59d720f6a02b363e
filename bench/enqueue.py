"""Benchmark of enqueueing: ``async_task`` calls and raw ``enqueue_many`` per second, per broker.

Run ``python bench/enqueue.py [--tasks N] [--only redis,sqlite,postgres]``. Each
broker is measured from this one process with one reused broker instance;
what the run enqueued is deleted afterwards. Servers come from
QENGINE_BENCH_REDIS_URL and QENGINE_BENCH_DATABASE_URL (loopback by default);
an unreachable one is reported and skipped. Numbers are printed, never judged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in {None, ""}:  # run as a script from a checkout: import the local qengine
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import qengine
from qengine.brokers import Broker
from qengine.runtime import get_broker

SECRET = "bench-secret-key"


def broker_urls(tmp: str) -> dict[str, str]:
    return {
        "redis": os.environ.get("QENGINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "sqlite": f"sqlite:///{tmp}/bench.sqlite3",
        "postgres": os.environ.get(
            "QENGINE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    }


def rate(count: int, run: Callable[[], object]) -> float:
    """Calls per second of ``run``, which performs ``count`` of them."""
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def measure(broker: Broker, tasks: int) -> tuple[float, float]:
    """(async_task calls per second, packages per second through enqueue_many)."""

    def submit() -> None:
        for _ in range(tasks):
            qengine.async_task("math.floor", 1.5, broker=broker)

    per_task = rate(tasks, submit)
    broker.purge_queue()
    # A real package, repeated: the raw rate of the broker without building tasks.
    qengine.async_task("math.floor", 1.5, broker=broker)
    (sample,) = broker.receive(count=1, timeout=1)
    broker.purge_queue()
    packages = [sample.package] * tasks
    raw = rate(tasks, lambda: broker.enqueue_many(packages))
    return per_task, raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per measurement")
    parser.add_argument("--only", default="", help="comma-separated broker names to run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls = broker_urls(tmp)
        wanted = [name for name in args.only.split(",") if name] or list(urls)
        print(f"{'broker':<10} {'async_task/s':>14} {'enqueue_many/s':>16}")
        for name in wanted:
            qengine.configure(
                name=f"bench-{os.getpid()}",
                broker=urls[name],
                store=f"sqlite:///{tmp}/store.sqlite3",
                secret_key=SECRET,
            )
            broker = get_broker()
            if not broker.ping():
                print(f"{name:<10} {'unreachable: ' + repr(broker):>31}")
                continue
            try:
                per_task, raw = measure(broker, args.tasks)
            finally:
                broker.delete_queue()
            print(f"{name:<10} {per_task:>14,.0f} {raw:>16,.0f}")
        qengine.configure(store=f"sqlite:///{tmp}/store.sqlite3")  # release connections


if __name__ == "__main__":
    main()
