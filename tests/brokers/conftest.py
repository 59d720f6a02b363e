"""Broker factories for the contract suite: one parameter per broker, cleaned up after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from qengine.brokers import Broker
from qengine.config import load_config
from qengine.runtime import get_broker
from tests.servers import SQS_KEYS

SECRET = "broker-suite-secret"

MakeBroker = Callable[..., Broker]

BROKERS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    pytest.param("sqs", marks=pytest.mark.sqs),
    pytest.param("mongo", marks=pytest.mark.mongo),
    pytest.param("custom"),
]

MONGO_DB = "qengine-test"
"""The database of the MongoDB broker's tests; queues are apart by their names."""


@pytest.fixture(params=BROKERS)
def broker_keys(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    """The config keys that select one broker (its server's fixture skips when it is down)."""
    kind = request.param
    if kind == "redis":
        return {"broker": request.getfixturevalue("redis_url")}
    if kind == "postgres":
        return {"broker": request.getfixturevalue("postgres_url")}
    if kind == "mariadb":
        return {"broker": request.getfixturevalue("mariadb_url")}
    if kind == "sqs":
        return {"sqs": {**SQS_KEYS, "endpoint_url": request.getfixturevalue("sqs_server").url}}
    if kind == "mongo":
        return {"mongo": request.getfixturevalue("mongo_server").url, "mongo_db": MONGO_DB}
    if kind == "sqlite":
        return {"broker": f"sqlite:///{tmp_path}/broker.sqlite3"}
    return {"broker_class": "tests.brokers.custom.MemoryBroker"}


@pytest.fixture
def make_broker(broker_keys: dict[str, Any], cluster_name: str) -> Iterator[MakeBroker]:
    """Build brokers through ``get_broker``; every queue they touched is deleted afterwards.

    Each call is a new instance, hence a new consumer: two calls with the same
    name behave like two clusters sharing one queue.
    """
    made: list[Broker] = []

    def make(name: str | None = None, **keys: Any) -> Broker:
        config = load_config(
            {"name": name or cluster_name, "secret_key": SECRET, **broker_keys, **keys}
        )
        broker = get_broker(config)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.delete_queue()
    for broker in made:
        broker.close()
    if "broker" in broker_keys and broker_keys["broker"].startswith("redis"):
        client = redis.Redis.from_url(broker_keys["broker"])
        try:
            for name in {broker.list_key for broker in made}:
                assert client.keys(f"qengine:{name}:*") == [], "Redis keys left behind"
        finally:
            client.close()
