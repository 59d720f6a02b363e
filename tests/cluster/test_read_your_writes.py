"""Read-your-writes: a result a waiter was given is in the store (or shared cache) already.

A real cluster, hundreds of round trips per broker while a backlog keeps the
cluster saving in batches. After each ``result(id, wait=…)`` the task is
looked up at once in this process and, through a pipe, in a second process
that has its own connections: both must find it with that result.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import redis

import qengine
from qengine import async_task, fetch, result
from tests.cluster.conftest import ROOT, cluster_env

pytestmark = pytest.mark.cluster

ROUND_TRIPS = 200
BACKLOG = 300
"""Filler tasks queued first, so the round trips meet a cluster that saves in batches."""

READER = textwrap.dedent(
    """
    import sys
    import qengine

    # One line in: a task id and its cached flag; one line out: what fetch() found.
    for line in sys.stdin:
        task_id, cached = line.split()
        task = qengine.fetch(task_id, cached=cached == "1")
        print("missing" if task is None else repr(task.result), flush=True)
    """
)


@pytest.fixture
def second_process() -> Iterator[subprocess.Popen[str]]:
    """A reader in another process, on the same configuration (given by environment)."""
    reader = subprocess.Popen(
        [sys.executable, "-c", READER], cwd=ROOT, env=cluster_env(qengine.get_config()),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield reader
    assert reader.stdin is not None
    assert reader.stdout is not None
    reader.stdin.close()
    reader.wait(10)
    reader.stdout.close()


def ask(reader: subprocess.Popen[str], task_id: str, cached: bool) -> str:
    assert reader.stdin is not None
    assert reader.stdout is not None
    reader.stdin.write(f"{task_id} {int(cached)}\n")
    reader.stdin.flush()
    return reader.stdout.readline().strip()


def round_trips(reader: subprocess.Popen[str], count: int, *, cached: bool = False) -> None:
    for n in range(count):
        task_id = async_task("tests.tasks.add", n, 1, cached=cached)
        assert result(task_id, wait=20_000, cached=cached) == n + 1
        here = fetch(task_id, cached=cached)
        assert here is not None, f"round trip {n}: told a result this process cannot read"
        assert here.result == n + 1
        assert ask(reader, task_id, cached) == repr(n + 1), f"round trip {n}: not stored yet"


def _configure(kind: str, tmp_path, request) -> None:
    common = {"secret_key": "ryw", "workers": 2, "poll": 0.01, "guard_cycle": 0.2}
    name = f"ryw-{request.node.callspec.id}-{id(request)}"
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        qengine.configure(
            broker=url, store=f"sqlite:///{tmp_path}/ryw.sqlite3", name=name, **common
        )
    elif kind == "sqlite":
        qengine.configure(store=f"sqlite:///{tmp_path}/ryw.sqlite3", name=name, **common)
    else:
        url = request.getfixturevalue("postgres_url")
        qengine.configure(store=url, name=name, **common)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_every_result_a_waiter_gets_is_readable_everywhere_at_once(
    kind, tmp_path, request, start_cluster
) -> None:
    _configure(kind, tmp_path, request)
    broker = qengine.get_broker()
    for n in range(BACKLOG):
        async_task("tests.tasks.add", n, 0)
    start_cluster()
    reader = request.getfixturevalue("second_process")
    try:
        round_trips(reader, ROUND_TRIPS)
        if kind == "redis":  # the broker's Redis is the shared cache
            round_trips(reader, ROUND_TRIPS // 4, cached=True)
    finally:
        broker.delete_queue()
        if kind == "redis":  # cached results never expire: remove them with the queue
            client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
            name = qengine.get_config().name
            for key in client.scan_iter(f"qengine:{name}:*"):
                client.delete(key)
            assert list(client.scan_iter(f"qengine:{name}:*")) == []
            client.close()
