"""The fork server and resource tracker forked from the cluster (``qengine.cluster.forking``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import qengine
from qengine import async_task, result
from qengine.store import ResultStore
from tests.processes import ROOT, ClusterProcess

from .conftest import cluster_env
from .test_cluster import wait_until

pytestmark = pytest.mark.cluster


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie left for an init that does not reap (as in some containers)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def helpers_and_workers(cluster: ClusterProcess, workers: int) -> list[psutil.Process]:
    """Every process the cluster started, once its workers are up (fork server + tracker)."""
    root = psutil.Process(cluster.pid)
    return wait_until(
        lambda: (found := root.children(recursive=True)) and len(found) >= workers + 2 and found
    )


def test_qcluster_forks_its_helpers_and_every_worker_from_itself(embedded, start_cluster):
    cluster = start_cluster()
    descendants = helpers_and_workers(cluster, embedded.workers)
    # The stdlib's helpers run ``python -c "from multiprocessing… import main"``: a fork
    # carries the cluster's own command line instead.
    command = psutil.Process(cluster.pid).cmdline()
    assert [p.cmdline() for p in descendants] == [command] * len(descendants)
    assert result(async_task("math.floor", 2.5), wait=10_000) == 2
    assert cluster.stop() == 0
    wait_until(lambda: all(ended(p) for p in descendants), timeout=10)


def test_a_worker_forked_from_a_running_cluster_stops_on_sigterm(embedded, tmp_path):
    # Forked after run() set the cluster's SIGTERM handler: a worker must not inherit it
    # (it would set a copy of the stop flag and run on), or stopping could hang.
    log_path = tmp_path / "direct.log"
    cluster = ClusterProcess(cluster_env(embedded), log_path, [], module="tests.cluster.direct")
    try:
        cluster.wait_running()
        command = psutil.Process(cluster.pid).cmdline()
        descendants = helpers_and_workers(cluster, embedded.workers)
        assert [p.cmdline() for p in descendants] == [command] * len(descendants)
        assert result(async_task("math.floor", 3.5), wait=10_000) == 3
        worker = psutil.Process(wait_until(lambda: cluster.worker_pids(embedded))[0])
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)  # not the cluster's child: psutil knows it ended, not its code
        assert result(async_task("math.floor", 4.5), wait=10_000) == 4  # replaced, still served
        assert cluster.stop() == 0
    finally:
        cluster.kill()


def run_script(source: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_fork_helpers_leaves_the_stdlib_to_start_them_while_other_threads_run():
    out = run_script(
        """
        import os, threading
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import forkserver, get_context
        from qengine.cluster.forking import fork_helpers

        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        print(fork_helpers())
        stop.set()
        thread.join()
        with ProcessPoolExecutor(1, mp_context=get_context("forkserver")) as pool:
            server = pool.submit(os.getppid).result(timeout=30)
        with open(f"/proc/{server}/cmdline", "rb") as f:
            print(b"multiprocessing.forkserver" in f.read())
        """
    )
    assert out.split() == ["False", "True"]


def test_fork_helpers_serves_the_stdlib_fork_server_protocol():
    out = run_script(
        """
        import os, sys
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import forkserver, get_context, resource_tracker
        from qengine.cluster.forking import fork_helpers

        print(fork_helpers(preload=("qengine.cluster.pool",)), fork_helpers())
        server = forkserver._forkserver._forkserver_pid
        tracker = resource_tracker._resource_tracker._pid
        context = get_context("forkserver")
        with ProcessPoolExecutor(2, mp_context=context, max_tasks_per_child=1) as pool:
            parents = {pool.submit(os.getppid).result(timeout=30) for _ in range(4)}
            lock = context.Lock()  # a named semaphore: registered with our tracker
        print(parents == {server}, "qengine.cluster.pool" in sys.modules)
        print(resource_tracker._resource_tracker._pid == tracker != None)
        os.kill(server, 9)
        while open(f"/proc/{server}/stat").read().split()[2] != "Z":
            pass  # dead, left for the stdlib to reap and replace
        with ProcessPoolExecutor(1, mp_context=context) as pool:  # the stdlib starts its own
            print(pool.submit(os.getppid).result(timeout=30) not in (server, os.getpid()))
        """
    )
    assert out.split() == ["True", "False", "True", "True", "True", "True"]


def test_the_helpers_leave_with_the_cluster_and_its_workers(embedded, start_cluster):
    # Each helper reads a pipe until every holder of its write end has gone: the copies
    # a fork gave the helpers themselves must have been closed, or they would never leave.
    cluster = start_cluster()
    descendants = helpers_and_workers(cluster, embedded.workers)
    helpers = [p for p in descendants if p.ppid() == cluster.pid]
    assert len(helpers) == 2  # the fork server and the tracker; the workers are the server's
    for process in [psutil.Process(cluster.pid)] + [p for p in descendants if p not in helpers]:
        process.kill()
    cluster.process.wait(10)
    wait_until(lambda: all(ended(p) for p in helpers), timeout=10)


def test_workers_and_helpers_leave_when_the_cluster_is_killed(embedded, start_cluster, tmp_path):
    # SIGKILL (or the OOM killer) gives the cluster no chance to stop its pool: each worker
    # watches the cluster itself, a busy one too, and then the helpers find their pipes closed.
    cluster = start_cluster()
    descendants = helpers_and_workers(cluster, embedded.workers)
    marker = tmp_path / "busy.pid"
    async_task("tests.tasks.pid_file_then_sleep", str(marker), 60)
    busy = int(wait_until(lambda: marker.exists() and marker.read_text()))
    assert busy in [p.pid for p in descendants]
    psutil.Process(cluster.pid).kill()
    cluster.process.wait(10)
    wait_until(lambda: all(ended(p) for p in descendants), timeout=15)


def test_a_spawned_worker_watches_its_parent_the_cluster(tmp_path):
    # Without a fork server (spawn: not Linux) the cluster is the worker's own parent.
    script = tmp_path / "spawned.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, time
            from multiprocessing import get_context
            from qengine.cluster.pool import _leave_with

            def worker(cluster, ready, watch):
                if watch:
                    _leave_with(cluster)
                ready.set()
                time.sleep(60)

            if __name__ == "__main__":
                context = get_context("spawn")
                ready = context.Event()
                child = context.Process(
                    target=worker, args=(os.getpid(), ready, sys.argv[1] == "watch")
                )
                child.start()
                assert ready.wait(30)
                with open(sys.argv[2], "w") as out:
                    out.write(str(child.pid))
                os._exit(0)  # the cluster killed outright: no atexit, no terminate
            """
        )
    )

    def orphan(mode: str) -> psutil.Process:
        # No pipes: the orphan would hold them open, and run() would wait for it.
        pid_file = tmp_path / f"{mode}.pid"
        subprocess.run(
            [sys.executable, str(script), mode, str(pid_file)], cwd=ROOT, timeout=60,
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return psutil.Process(int(pid_file.read_text()))

    unwatched = orphan("no-watch")
    try:
        time.sleep(1)
        assert not ended(unwatched)  # what the watch is for: nothing else ends it
    finally:
        unwatched.kill()
    watched = orphan("watch")
    wait_until(lambda: ended(watched), timeout=15)


def _loads_sqlalchemy(pid: int) -> bool:
    """Whether the process mapped one of SQLAlchemy's compiled modules (it imports several)."""
    with open(f"/proc/{pid}/maps") as maps:
        return "/sqlalchemy/" in maps.read()


@pytest.mark.redis
def test_a_cluster_on_redis_and_a_sqlite_store_never_loads_sqlalchemy(
    redis_url, cluster_name, tmp_path, start_cluster
):
    """13 MB of every such cluster: its store statements run on the driver (``qengine.lite``)."""
    import sqlalchemy

    if not list(Path(sqlalchemy.__file__).parent.rglob("*.so")):
        pytest.skip("this SQLAlchemy has no compiled modules to find in a process's maps")
    store = f"sqlite:///{tmp_path}/fresh.sqlite3"  # a fresh file: its tables made by a child
    qengine.configure(
        name=cluster_name, broker=redis_url, store=store, secret_key="lite", workers=2,
        save_limit=3, guard_cycle=0.2,
    )  # fmt: skip
    cluster = start_cluster()
    # One at a time: a waiter is told of a result before its batch's prune runs.
    got = [result(async_task("math.floor", i + 0.5), wait=10_000) for i in range(8)]
    assert got == list(range(8))
    store = ResultStore(qengine.get_config())
    wait_until(lambda: store.count(success=True) == 3)  # pruned to save_limit
    assert not _loads_sqlalchemy(cluster.pid)
    assert cluster.stop() == 0
