"""Clusters on the real servers: Redis broker with a PostgreSQL store, and a Redis outage."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis

import qengine
from qengine import async_task, fetch, result
from qengine.runtime import get_broker
from qengine.status import Stat
from tests.cluster.test_cluster import wait_until
from tests.servers import ping_redis

pytestmark = pytest.mark.cluster


@pytest.mark.redis
@pytest.mark.postgres
def test_redis_broker_with_postgres_store(redis_url, postgres_url, cluster_name, start_cluster):
    config = qengine.configure(
        name=cluster_name, broker=redis_url, store=postgres_url, secret_key="services",
        workers=2, guard_cycle=0.2,
    )  # fmt: skip
    cluster = start_cluster()
    try:
        ids = [async_task("tests.tasks.add", i, 1) for i in range(50)]
        assert [result(i, wait=10_000) for i in ids] == [i + 1 for i in range(50)]
        began = time.perf_counter()
        quick = async_task("tests.tasks.add", 2, 2)
        assert result(quick, wait=5_000) == 4
        assert time.perf_counter() - began < 1.0, "a notified wait returns promptly"
        stats = wait_until(lambda: Stat.get_all(config))
        assert stats[0].pid == cluster.pid
        assert cluster.stop() == 0
        assert get_broker().queue_size() == 0
        assert get_broker().lock_size() == 0
    finally:
        get_broker().delete_queue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, so stopping it disturbs no other test."""

    def __init__(self, tmp_path) -> None:
        self.port = _free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._pings, timeout=10)

    def _pings(self) -> bool:
        try:
            return ping_redis(self.url, timeout=0.5)
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_cluster_survives_a_redis_outage(tmp_path, cluster_name, start_cluster):
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        qengine.configure(
            name=cluster_name, broker=server.url, store=f"sqlite:///{tmp_path}/s.sqlite3",
            secret_key="outage", workers=1, guard_cycle=0.2,
        )  # fmt: skip
        cluster = start_cluster()
        assert result(async_task("tests.tasks.add", 1, 1), wait=10_000) == 2
        server.stop()
        time.sleep(3)
        server.start()
        qengine.configure(qengine.get_config())  # new connections after the restart
        after = [async_task("tests.tasks.add", i, 10) for i in range(5)]
        assert [result(i, wait=20_000) for i in after] == [10, 11, 12, 13, 14]
        assert cluster.process.poll() is None, "the cluster lived through the outage"
        assert "cannot" in cluster.log(), "the outage was noticed and logged"
        assert cluster.stop() == 0
        assert all(fetch(i).attempt_count == 1 for i in after)
    finally:
        server.stop()
