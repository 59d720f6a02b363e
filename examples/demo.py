"""The demo: a real cluster on the embedded default (one SQLite file as broker and store).

Run it with ``./scripts/demo``. It starts ``qcluster`` in the background,
queues tasks (single ones, a hook, a group, a chain, an iterable, a failing
one), prints their stored results and stops the cluster cleanly. It works in
``.demo/`` so it never touches a project's own data.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import qengine  # noqa: E402
from qengine.status import Stat  # noqa: E402


def start_cluster(workdir: Path, store: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env.update(QENGINE_STORE=store, QENGINE_WORKERS="2", PYTHONPATH=str(ROOT))
    log = (workdir / "cluster.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "qengine.cli"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for_cluster(cluster: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(s.status in {"Idle", "Working"} for s in Stat.get_all()):
            return
        if cluster.poll() is not None:
            raise SystemExit("the cluster exited early; see .demo/cluster.log")
        time.sleep(0.05)
    raise SystemExit("the cluster did not start in time; see .demo/cluster.log")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="   log %(levelname)s: %(message)s")
    workdir = Path(os.environ.get("DEMO_WORKDIR", ROOT / ".demo"))
    workdir.mkdir(exist_ok=True)
    store = f"sqlite:///{workdir}/demo.sqlite3"
    qengine.configure(store=store)
    qengine.get_broker().purge_queue()

    print("Starting qcluster in the background (2 workers, embedded SQLite) …")
    cluster = start_cluster(workdir, store)
    try:
        wait_for_cluster(cluster)
        stat = Stat.get_all()[0]
        print(f"  cluster {stat.cluster_id} on {stat.host}: {stat.status}, workers {stat.workers}")

        print("A task, waited for, and its stored record:")
        task_id = qengine.async_task("math.copysign", 2, -2)
        task = qengine.fetch(task_id, wait=10_000)
        print(f"  {task.name}: result={task.result} success={task.success} "
              f"attempts={task.attempt_count} took {task.time_taken() * 1000:.1f} ms")  # fmt: skip

        print("A task with a hook (the hook runs in the cluster; see .demo/cluster.log):")
        hooked = qengine.async_task(
            "examples.demo_tasks.slow_add", 20, 22, hook="examples.demo_tasks.announce"
        )
        print(f"  result {qengine.result(hooked, wait=10_000)}")

        print("A group of four:")
        qengine.delete_group("demo-modf", tasks=True)
        for i in range(4):
            qengine.async_task("math.modf", i + 0.5, group="demo-modf")
        print("  ", qengine.result_group("demo-modf", count=4, wait=10_000))

        print("An iterable, collated in order:")
        iter_id = qengine.async_iter("math.floor", [1.5, 2.5, 3.5])
        print("  ", qengine.result(iter_id, wait=10_000))

        print("A chain, one link after the other:")
        chain = qengine.Chain()
        chain.append("math.copysign", 1, -1)
        chain.append("math.floor", 1.5)
        chain.run()
        print(f"   {chain.result(wait=10_000)} ({chain.current()} of {chain.length()} done)")

        print("A failing task is stored as a failure with its error:")
        failed = qengine.fetch(qengine.async_task("my.buggy.code", ack_failure=True), wait=10_000)
        print(f"   success={failed.success}: {failed.result.splitlines()[0]}")
    finally:
        print("Stopping the cluster (SIGTERM) …")
        cluster.send_signal(signal.SIGTERM)
        code = cluster.wait(60)
        print(f"  qcluster exited with status {code}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
