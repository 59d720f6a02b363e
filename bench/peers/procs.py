"""Starting, measuring and stopping process trees; used in both virtual environments.

Every process the benchmark starts is stopped by pid or by process group, never
by name: other work runs on this machine. A process tree is a root and its
descendants, read from ``/proc`` by psutil, so a system's worker processes are
measured whatever they fork (a forkserver, RQ's work horse per job).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

_GROUPS: set[int] = set()
"""Process groups this process started and has not reaped: killed at exit, whatever happens."""


def kill_all_groups() -> None:
    """Kill every process group this process started and has not yet stopped."""
    for pgid in list(_GROUPS):
        kill_group(pgid)


atexit.register(kill_all_groups)


def spawn_group(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path | int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session (so its own process group), logged to ``log``.

    The group is remembered, so an exit of this process (even by an exception)
    kills it; ``kill_group`` forgets it again.
    """
    out = log.open("ab") if isinstance(log, Path) else log
    try:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    finally:
        if isinstance(log, Path) and out is not None and not isinstance(out, int):
            out.close()
    _GROUPS.add(process.pid)
    return process


def kill_group(pgid: int, grace: float = 0.0) -> bool:
    """SIGTERM the group (when ``grace`` > 0), wait up to ``grace`` s, then SIGKILL what is left.

    Returns whether the group still existed.
    """
    existed = True
    try:
        if grace > 0:
            os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        existed = False
    _GROUPS.discard(pgid)
    return existed


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A zombie leader still counts for killpg: the group is over once only zombies remain.
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def run_bounded(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str]:
    """Run ``argv`` to its end within ``timeout`` s in its own group; return (exit code, output).

    On timeout (or any error here) the whole group is killed, children included,
    and the exit code is -9.
    """
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, text=True,
    )  # fmt: skip
    _GROUPS.add(process.pid)
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        out, _ = process.communicate()
        return -9, (out or "") + f"\n[killed after {timeout:.0f} s]"
    finally:
        kill_group(process.pid)  # whatever it left behind in its group


def tree(roots: Iterable[int]) -> list[psutil.Process]:
    """The live processes of the trees under ``roots`` (the roots included)."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by the trees under ``roots``.

    A process's ``children_*`` times hold its reaped children (RQ's work horses),
    and a live child is counted once, under its own pid, so nothing is counted twice.
    """
    total = 0.0
    for proc in tree(roots):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_pss(roots: Iterable[int]) -> int:
    """Proportional set size, in bytes, of the trees under ``roots``.

    PSS divides each shared page among the processes that map it, so forked
    workers sharing their parent's pages are not counted once per worker.
    """
    total = 0
    for proc in tree(roots):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


def stop_tree(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Stop a worker started by ``spawn_group``: SIGTERM to its group, SIGKILL after ``grace`` s.

    The group reaches every descendant that did not leave it, and the pids seen in
    the tree before the signal are killed too, in case one did.
    """
    seen = tree([process.pid])
    kill_group(process.pid, grace=grace)
    for proc in seen:
        # psutil checks the process's start time first: a pid reused since is left alone.
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def record_group(path: Path, pid: int) -> None:
    """Note a group leader (pid and start time) in ``path``, for ``kill_recorded`` elsewhere.

    A driver that is killed cannot stop its workers; the runner that started it
    reads this file afterwards and stops any group still there.
    """
    with path.open("a") as f:
        f.write(f"{pid} {psutil.Process(pid).create_time()}\n")


def kill_recorded(path: Path, grace: float = 5.0) -> int:
    """Kill the groups noted in ``path`` whose leader is still the same process; how many."""
    if not path.exists():
        return 0
    killed = 0
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        pid, started = line.split()
        try:
            if abs(psutil.Process(int(pid)).create_time() - float(started)) > 0.01:
                continue  # the pid was reused: not ours
        except psutil.NoSuchProcess:
            # The leader is gone. Linux keeps a pid from reuse while it names a live
            # process group, so any process still in this group is one of ours.
            pass
        except psutil.Error:
            continue
        killed += kill_group(int(pid), grace=grace)
    return killed
