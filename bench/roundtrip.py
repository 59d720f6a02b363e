"""Where a round trip's time goes: a timeline of one task, step by step, median over many.

Starts a real cluster with the shipped defaults (Redis broker, SQLite store,
2 workers, save_limit 0, as ``bench/peers`` runs it) whose steps are wrapped
to note the time they reach (in the cluster process, through
``python -c``: nothing in qengine knows of this), then runs round trips one
at a time, ``async_task`` then ``result(wait=...)``, noting the producer's
own steps. The task notes when it ran in its worker. Every step's time is
``time.time()`` (one clock for every process on this machine); each round
trip's steps are put in order and the gap before each is printed as a
median and p90 over all round trips.

This is a profiler's view, not a benchmark: the wrappers cost a few
microseconds each. ``bench/peers/run.py`` and ``bench/floor.py`` give the
figures to compare.

Usage: ``.venv/bin/python bench/roundtrip.py [-n 300] [--load 20000]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_marks: list[tuple[str, float]] = []
CHECKPOINT_BEGAN, CHECKPOINT_ENDED = "checkpoint began", "checkpoint ended"
VARIANT_ENV = "ROUNDTRIP_VARIANT"


def stamp() -> float:
    """The task: when it ran, in its worker."""
    return time.time()


def _wrap(owner: Any, name: str, *, before: str | None = None, after: str | None = None,
          when: Callable[[Any], bool] = lambda _: True) -> None:  # fmt: skip
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            _marks.append((before, time.time()))
        value = original(*args, **kwargs)
        if after and when(value):
            _marks.append((after, time.time()))
        return value

    setattr(owner, name, wrapped)


def trace_cluster(out: str) -> None:
    """Wrap the cluster's steps, run the cluster, write the marks to ``out`` when it stops."""
    import atexit

    from qengine import lite, notify, store
    from qengine.brokers import redis as redis_broker
    from qengine.cluster import monitor, workers

    _wrap(redis_broker.RedisBroker, "receive", after="cluster received", when=bool)
    _wrap(workers.Workers, "dispatch", before="cluster hands off")
    _wrap(workers.Workers, "_handed_back", before="future done")
    _wrap(monitor.Monitor, "settle", before="monitor has it")
    _wrap(store.ResultStore, "save_outcomes", before="save starts", after="saved")
    _wrap(notify.Notifier, "notify", after="notified")
    _wrap(redis_broker.RedisBroker, "acknowledge_many", after="acknowledged")
    _wrap(lite.Checkpointer, "checkpoint", before=CHECKPOINT_BEGAN, after=CHECKPOINT_ENDED)
    exec(os.environ.get(VARIANT_ENV, ""), {"lite": lite})

    def dump() -> None:
        Path(out).write_text(json.dumps(_marks))

    atexit.register(dump)
    from qengine.cli import qcluster_main

    raise SystemExit(qcluster_main(["--log-level", "WARNING"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="round trips measured (after 20 more)")
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        help="tasks run through the cluster first (the peers' rt follows 20,000)",
    )
    parser.add_argument(
        "--variant",
        default="",
        help="Python run in the cluster before it starts, with `lite` imported, "
        "to try a change: e.g. 'lite.QUIET_S = 0'",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import qengine
    from qengine import notify, store

    work = Path(tempfile.mkdtemp(prefix="qengine-rt-"))
    keys = {
        "QENGINE_BROKER": REDIS_URL,
        "QENGINE_STORE": f"sqlite:///{work / 'store.sqlite3'}",
        "QENGINE_SECRET_KEY": "bench-roundtrip",
        "QENGINE_WORKERS": "2",
        "QENGINE_SAVE_LIMIT": "0",
        "QENGINE_NAME": f"rt{os.getpid()}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
    env.update(keys, PYTHONPATH=str(ROOT), **{VARIANT_ENV: args.variant})
    marks_file = work / "cluster.json"
    code = f"from bench.roundtrip import trace_cluster; trace_cluster({str(marks_file)!r})"
    cluster = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    try:
        qengine.configure(qengine.load_config(environ=keys))
        _wrap(store.ResultStore, "get", before="waiter looks in the store", after="looked")
        _wrap(notify.Notifier, "_verified", before="waiter woken")
        trips: list[tuple[float, float]] = []
        deadline = time.monotonic() + 60
        while qengine.result(qengine.async_task("bench.roundtrip.stamp"), wait=1000) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the cluster did not answer within 60 s")
        if args.load:
            last, call = "", ("bench.roundtrip.stamp", ())
            for start in range(0, args.load, 1000):
                last = qengine.async_tasks([call] * min(1000, args.load - start))[-1]
            if qengine.result(last, wait=600_000) is None:
                raise SystemExit(f"the load of {args.load} tasks did not finish within 600 s")
        for i in range(args.n + 20):
            _marks.clear() if i == 20 else None
            began = time.time()
            _marks.append(("async_task called", began))
            task_id = qengine.async_task("bench.roundtrip.stamp")
            _marks.append(("async_task returned", time.time()))
            ran = qengine.result(task_id, wait=10_000)
            _marks.append(("result returned", time.time()))
            _marks.append(("task ran in its worker", ran))
            if i >= 20:
                trips.append((began, time.time()))
        producer = list(_marks)
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)
    marks = producer + [tuple(m) for m in json.loads(marks_file.read_text())]
    _report(trips, marks)


def _checkpoints(marks: list[tuple[str, float]]) -> list[tuple[float, float]]:
    """The background checkpoints' (start, end) times, taken out of ``marks``."""
    spans, began = [], None
    for name, at in marks:
        if name == CHECKPOINT_BEGAN:
            began = at
        elif name == CHECKPOINT_ENDED and began is not None:
            spans.append((began, at))
            began = None
    marks[:] = [m for m in marks if m[0] not in (CHECKPOINT_BEGAN, CHECKPOINT_ENDED)]
    return spans


def _overlap_ms(began: float, ended: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(ended, e) - max(began, b)) for b, e in spans) * 1000


def _report(trips: list[tuple[float, float]], marks: list[tuple[str, float]]) -> None:
    marks.sort(key=lambda m: m[1])
    spans = _checkpoints(marks)
    gaps: dict[str, list[float]] = {}
    order: list[str] = []
    totals = []
    worst_steps: list[tuple[float, float, str, float]] = []  # (total, at, step, gap) per trip
    index = 0
    for began, ended in trips:
        trip: dict[str, float] = {}
        while index < len(marks) and marks[index][1] < began:
            index += 1
        previous = began
        seen = set()
        while index < len(marks) and marks[index][1] <= ended:
            name, at = marks[index]
            index += 1
            if name in seen:  # an ack or save of an earlier trip's tail, say: first one counts
                continue
            seen.add(name)
            if name not in order:
                order.append(name)
            gaps.setdefault(name, []).append((at - previous) * 1000)
            trip[name] = (at - previous) * 1000
            previous = at
        totals.append((ended - began) * 1000)
        step = max(trip, key=trip.__getitem__, default="?")
        worst_steps.append((totals[-1], began - trips[0][0], step, trip.get(step, 0.0),
                            _overlap_ms(began, ended, spans)))  # fmt: skip
    ordered = sorted(totals)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"{len(trips)} round trips, p50 {statistics.median(totals):.3f} ms, p99 {p99:.3f} ms")
    print(
        "the slowest 1%: total ms, seconds into the run, the step that took longest,"
        " and how long a background checkpoint ran meanwhile"
    )
    for total, at, step, gap, cp in sorted(worst_steps, reverse=True)[: max(1, len(trips) // 100)]:
        print(f"  {total:8.3f} ms at {at:7.3f} s: {step} {gap:.3f} ms; checkpoint {cp:.3f} ms")
    met = [w[0] for w in worst_steps if w[4] > 0]
    rest = [w[0] for w in worst_steps if w[4] == 0]
    if spans and met and rest:
        took = sorted((e - b) * 1000 for b, e in spans)
        print(
            f"{len(spans)} checkpoints, p50 {statistics.median(took):.3f} ms, "
            f"max {took[-1]:.3f} ms; trips meeting one: {len(met)}, "
            f"p50 {statistics.median(met):.3f} ms, max {max(met):.3f}; "
            f"the others p50 {statistics.median(rest):.3f} ms, max {max(rest):.3f}"
        )
    print(f"{'step (gap since the one before)':<34}{'p50 ms':>9}{'p90 ms':>9}{'seen':>6}")
    for name in order:
        values = sorted(gaps[name])
        p90 = values[int(len(values) * 0.9) - 1] if len(values) > 1 else values[0]
        print(f"{name:<34}{statistics.median(values):>9.3f}{p90:>9.3f}{len(values):>6}")


if __name__ == "__main__":
    main()
