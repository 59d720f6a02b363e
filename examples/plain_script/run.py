"""Send work to a running cluster and print what comes back (tasks, group, chain, iter, schedule).

From the repository root, start a cluster in one terminal and run this in another::

    PYTHONPATH=. qcluster
    python -m examples.plain_script.run

See README.md beside this file for Redis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the ``examples.plain_script`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import qengine
from examples.plain_script import tasks
from qengine.config import mask_url
from qengine.schedules import Schedule, schedule
from qengine.status import Stat

GROUP = "plain-script-squares"
SCHEDULE = "plain-script-greeting"


class Report:
    """Prints each outcome and remembers whether any wait ran out."""

    def __init__(self, wait_ms: int) -> None:
        self.wait_ms = wait_ms
        self.missing: list[str] = []

    def show(self, label: str, value: Any, expected_len: int | None = None) -> None:
        incomplete = value is None or (expected_len is not None and len(value) < expected_len)
        if incomplete:
            self.missing.append(label)
            print(f"{label}: no (complete) result within {self.wait_ms} ms; got {value!r}")
        else:
            print(f"{label} = {value!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", help="broker URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--store", help="result store URL (default: sqlite:///qengine.sqlite3)")
    parser.add_argument("--secret-key", help="signing key; the cluster must use the same one")
    parser.add_argument(
        "--wait-ms", type=int, default=10_000, help="how long to wait for each result (ms)"
    )
    parser.add_argument(
        "--without-schedule",
        action="store_true",
        help="skip the schedule (for a cluster started with QENGINE_SCHEDULER=false)",
    )
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> qengine.Config:
    """Configure the engine from code; keys not given come from QENGINE_* variables or defaults.

    The cluster is another process and reads only its environment (or a TOML
    file), so whatever is set here must match what ``qcluster`` was given.
    """
    keys = {"broker": args.broker, "store": args.store, "secret_key": args.secret_key}
    return qengine.configure(**{key: value for key, value in keys.items() if value})


def run_tasks(report: Report) -> None:
    task_id = qengine.async_task(tasks.square, 7)
    report.show("square(7)", qengine.result(task_id, wait=report.wait_ms))

    # fetch() returns the whole stored task: result, success, timings.
    task = qengine.fetch(qengine.async_task(tasks.slow_sum, [1, 2, 3]), wait=report.wait_ms)
    report.show("slow_sum([1, 2, 3])", None if task is None else task.result)

    # A failing task is stored too, with the error and its traceback as the result.
    failed = qengine.fetch(qengine.async_task(tasks.divide, 1, 0), wait=report.wait_ms)
    error = None if failed is None else (failed.success, failed.result.splitlines()[0])
    report.show("divide(1, 0) (success, error)", error)


def run_group(report: Report) -> None:
    qengine.delete_group(GROUP, tasks=True)  # results of an earlier run would count too
    for x in range(1, 6):
        qengine.async_task(tasks.square, x, group=GROUP)
    results = qengine.result_group(GROUP, count=5, wait=report.wait_ms)
    # Workers finish in any order; the group's results come in order of completion.
    report.show(f"group {GROUP} (sorted)", sorted(results), expected_len=5)


def run_chain(report: Report) -> None:
    chain = qengine.Chain()
    chain.append(tasks.greet, "Ada")
    chain.append(tasks.word_count, "one link after the other")
    chain.run()
    report.show("chain", chain.result(wait=report.wait_ms), expected_len=2)


def run_iter(report: Report) -> None:
    iter_id = qengine.async_iter(tasks.square, [1, 2, 3, 4])
    report.show("iter square([1, 2, 3, 4])", qengine.result(iter_id, wait=report.wait_ms))


def run_schedule(report: Report) -> None:
    stale = Schedule.get(SCHEDULE)
    if stale is not None:
        stale.delete()
    qengine.delete_group(SCHEDULE, tasks=True)
    # A schedule is stored and may run much later in another process: its function is
    # a dotted path. Once, now; repeats=-1 deletes it after the run.
    schedule(f"{tasks.__name__}.greet", "schedule", name=SCHEDULE)
    # Its tasks get the schedule's name as their group.
    results = qengine.result_group(SCHEDULE, count=1, wait=report.wait_ms)
    report.show(f"schedule {SCHEDULE}", results, expected_len=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = configure(args)
    print(f"broker {mask_url(config.broker_url)}, store {mask_url(config.store)}")
    if not Stat.get_all(config):
        print(
            f"no cluster named {config.name!r} is running yet: start one with "
            "`PYTHONPATH=. qcluster` from the repository root; tasks wait in the queue"
        )
    report = Report(args.wait_ms)
    run_tasks(report)
    run_group(report)
    run_chain(report)
    run_iter(report)
    if not args.without_schedule:
        run_schedule(report)
    if report.missing:
        print(f"missing: {', '.join(report.missing)}")
        return 1
    print("all results in")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
