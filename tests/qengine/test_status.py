"""Cluster status snapshots (Stat) against the real Redis: publishing, reading, expiry."""

from __future__ import annotations

import pytest

import qengine
from qengine.status import Stat

pytestmark = pytest.mark.redis


@pytest.fixture
def config(redis_url, cluster_name, redis_client):
    config = qengine.configure(broker=redis_url, name=cluster_name, secret_key="status-test")
    yield config
    keys = list(redis_client.scan_iter(f"qengine:{cluster_name}:*"))
    if keys:
        redis_client.delete(*keys)


def test_snapshots_are_published_and_read_back_side_by_side(config):
    for cluster_id in ("101", "102"):
        Stat(cluster_id=cluster_id, name=config.name, pid=int(cluster_id)).save(config)
    assert [s.cluster_id for s in Stat.get_all(config)] == ["101", "102"]
    Stat.get("101", config).clear(config)
    assert [s.cluster_id for s in Stat.get_all(config)] == ["102"]


def test_publishing_and_reading_reuse_one_connection(config, redis_client):
    Stat.get_all(config)  # the first call connects
    before = redis_client.info("stats")["total_connections_received"]
    stat = Stat(cluster_id="7", name=config.name, pid=7)
    for _ in range(20):
        stat.save(config)
        Stat.get_all(config)
    after = redis_client.info("stats")["total_connections_received"]
    # A client per call connected forty times; leave room for anything else connecting.
    assert after - before < 10
