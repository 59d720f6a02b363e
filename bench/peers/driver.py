"""One round of one system: the phases, timed, written as JSON. Started by run.py, not by hand.

It runs in the system's own virtual environment (the producer must import the
system's library) and it is the producer: every enqueue, count and wait of the
round happens in this process, so its CPU time during the enqueue phase is the
producer's cost. Its workers are process groups of their own, noted in a file
that run.py reads to stop them if this process is killed; here they are
stopped in a ``finally``, at exit, and on SIGTERM.

Usage (what run.py calls): ``driver.py SYSTEM --workload noop -n 10000 --rt 300
--phases enqueue,batch,drain,e2e,rt --broker-db 14 --result-db 15 --out FILE``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import procs
import workload
from systems import SYSTEMS, Context, System

PHASES = ("enqueue", "batch", "drain", "e2e", "rt")
POLL = 0.02
"""Seconds between two counts of stored results: oftener would load what it measures."""
WARMUP = 10
"""Round trips run before the measured ones, so first connections and imports don't count."""


def note(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


def wait_count(
    system: System, target: int, deadline: float, on_first: Callable[[int], None] | None = None
) -> float:
    """Poll ``count_done`` until it reaches ``target``; return the time it was seen there.

    ``on_first`` is called with the first non-zero count, when it is seen.
    """
    first = on_first is None
    while True:
        count = system.count_done()
        if not first and count > 0:
            first = True
            assert on_first is not None
            on_first(count)
        if count >= target:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{system.name}: {count} of {target} results stored at the deadline")
        system.check_workers()
        time.sleep(POLL)


def run_round(
    system: System, args: argparse.Namespace, log: Path, record: Path | None
) -> dict[str, Any]:
    """The phases of one round; figures in their units (per s, ms, MB, µs of CPU per task)."""
    n, phases = args.n, set(args.phases)
    figures: dict[str, Any] = {}
    budget = args.phase_timeout
    system.setup()

    if "batch" in phases and system.batch_api:
        note(f"{system.name}: batch enqueue of {n} ({system.batch_api})")
        began, cpu = time.perf_counter(), time.process_time()
        system.enqueue_batch(n)
        figures["batch_enqueue_per_s"] = n / (time.perf_counter() - began)
        figures["batch_producer_cpu_us"] = (time.process_time() - cpu) / n * 1e6
        system.purge()

    backlog = n if phases & {"enqueue", "drain"} else 0
    if backlog:
        note(f"{system.name}: enqueue {n}, one call each, no workers")
        began, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            system.enqueue()
        if "enqueue" in phases:
            figures["enqueue_per_s"] = n / (time.perf_counter() - began)
            figures["producer_cpu_us"] = (time.process_time() - cpu) / n * 1e6

    note(f"{system.name}: starting workers")
    started = time.perf_counter()
    system.start_workers(log, record)
    pids = system.worker_pids()

    if backlog and "drain" in phases:
        first: dict[str, float] = {}

        def seen(count: int) -> None:
            first.update(at=time.perf_counter(), count=count, cpu=procs.tree_cpu(pids))

        done = wait_count(system, n, time.monotonic() + budget, seen)
        cpu = procs.tree_cpu(pids)
        drained = n - first["count"]
        figures["first_result_s"] = first["at"] - started
        if drained > 0 and done > first["at"]:
            figures["drain_per_s"] = drained / (done - first["at"])
            figures["worker_cpu_us"] = (cpu - first["cpu"]) / drained * 1e6
        figures["pss_mb"] = procs.tree_pss(pids) / 2**20
        note(f"{system.name}: drained {drained} ({first['count']} at the first look)")

    if "e2e" in phases:
        note(f"{system.name}: end to end, {n} fresh tasks")
        base = system.count_done()
        began = time.perf_counter()
        for _ in range(n):
            system.enqueue()
        figures["e2e_enqueue_per_s"] = n / (time.perf_counter() - began)
        done = wait_count(system, base + n, time.monotonic() + budget)
        figures["e2e_per_s"] = n / (done - began)

    if "rt" in phases:
        note(f"{system.name}: {args.rt} round trips")
        want = workload.expected(args.workload, system.ctx.payload)
        deadline = time.monotonic() + budget
        times = []
        for i in range(WARMUP + args.rt):
            began = time.perf_counter()
            handle = system.enqueue()
            got = system.wait_result(handle, timeout=30)
            if i >= WARMUP:
                times.append((time.perf_counter() - began) * 1000)
            if got != want:
                raise RuntimeError(f"{system.name}: round trip {i} returned {str(got)[:80]!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system.name}: round trips over {budget:.0f} s")
        times.sort()
        figures["rt_p50_ms"] = statistics.median(times)
        figures["rt_p99_ms"] = times[math.ceil(len(times) * 0.99) - 1]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("--workload", default="noop", choices=("noop", "realistic", "big"))
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--rt", type=int, default=300)
    parser.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES))
    parser.add_argument("--broker-db", type=int, required=True)
    parser.add_argument("--result-db", type=int, required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--phase-timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path, help="file noting the workers' process groups")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()

    # SIGTERM (run.py's timeout) unwinds through the finally below, which stops the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{args.system}-"))
    ctx = Context(
        workload=args.workload,
        name=f"peers_{args.system.replace('-', '_')}_{uuid.uuid4().hex[:8]}",
        broker_url=f"{args.redis}/{args.broker_db}",
        result_url=f"{args.redis}/{args.result_db}",
        workdir=workdir,
        payload=workload.payload(),
    )
    os.environ.update(ctx.env())
    log = workdir / "workers.log"
    outcome: dict[str, Any] = {"system": args.system, "workdir": str(workdir)}
    system: System | None = None
    try:
        cls = SYSTEMS[args.system]
        outcome["version"] = metadata.version(cls.package)
        outcome["batch_api"] = cls.batch_api
        system = cls(ctx)
        outcome["figures"] = run_round(system, args, log, args.record)
    except BaseException as exc:  # the report says what failed; run.py goes on with the others
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        outcome["traceback"] = traceback.format_exc()
        if log.exists():
            outcome["worker_log"] = log.read_text(errors="replace")[-4000:]
    finally:
        if system is not None:
            system.stop_workers()
            with contextlib.suppress(Exception):
                system.close()
        args.out.write_text(json.dumps(outcome, indent=1))
        if not args.keep and "error" not in outcome:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if "error" not in outcome else 1


if __name__ == "__main__":
    raise SystemExit(main())
