"""What only the Redis broker does: shared connections, errors, consumer bookkeeping."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from qengine.brokers.redis import RedisBroker
from qengine.config import Config, load_config
from qengine.errors import BrokerError, BrokerUnavailable
from qengine.runtime import get_broker

from .conftest import SECRET


@pytest.fixture
def config(redis_url: str, cluster_name: str) -> Config:
    return load_config({"name": cluster_name, "broker": redis_url, "secret_key": SECRET})


@pytest.fixture
def brokers(redis_client: redis.Redis, cluster_name: str) -> Iterator[list[RedisBroker]]:
    """Brokers a test made; their queue is deleted and checked gone afterwards."""
    made: list[RedisBroker] = []
    yield made
    for broker in made:
        broker.delete_queue()
        broker.close()
    assert redis_client.keys(f"qengine:{cluster_name}:*") == []


def consumers(client: redis.Redis, broker: RedisBroker) -> dict[str, int]:
    """The group's consumers and how many packages each holds."""
    return {
        info["name"].decode(): info["pending"]
        for info in client.xinfo_consumers(broker.stream, broker.group)
    }


@pytest.mark.redis
def test_an_existing_client_is_used_and_left_open(
    config: Config, redis_client: redis.Redis, brokers: list[RedisBroker]
) -> None:
    broker = RedisBroker(config, connection=redis_client)
    brokers.append(broker)
    broker.enqueue(b"shared")

    assert [d.package for d in broker.receive(timeout=0)] == [b"shared"]
    broker.close()
    assert redis_client.ping()


@pytest.mark.redis
def test_an_existing_pool_is_used_and_left_open(
    config: Config, redis_url: str, redis_client: redis.Redis
) -> None:
    pool = redis.ConnectionPool.from_url(redis_url)
    broker = RedisBroker(config, connection=pool)
    try:
        broker.enqueue(b"pooled")
        assert [d.package for d in broker.receive(timeout=0)] == [b"pooled"]
        broker.close()
        assert redis.Redis(connection_pool=pool).ping()
    finally:
        broker.delete_queue()
        pool.disconnect()
    assert redis_client.keys(f"qengine:{config.name}:*") == []


@pytest.mark.redis
def test_a_decoding_client_still_carries_binary_packages(
    config: Config, redis_url: str, brokers: list[RedisBroker]
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        broker = RedisBroker(config, connection=client)
        brokers.append(broker)
        broker.enqueue(b"\xff\x00\xfe")
        assert [d.package for d in broker.receive(timeout=0)] == [b"\xff\x00\xfe"]
    finally:
        client.close()


@pytest.mark.redis
def test_the_redis_dict_of_the_spec_selects_this_broker(
    redis_url: str, cluster_name: str, brokers: list[RedisBroker]
) -> None:
    url = redis.connection.parse_url(redis_url)
    config = load_config({"name": cluster_name, "redis": url, "secret_key": SECRET})
    broker = get_broker(config)
    assert isinstance(broker, RedisBroker)
    brokers.append(broker)

    assert broker.info().startswith("Redis ")
    broker.enqueue(b"via dict")
    assert [d.package for d in broker.receive(timeout=0)] == [b"via dict"]


@pytest.mark.parametrize(
    "keys",
    [
        {"broker": "redis://:s3cret@127.0.0.1:1/0"},
        {"redis": {"host": "127.0.0.1", "port": 1, "password": "s3cret"}},
    ],
    ids=["url", "dict"],
)
def test_an_unreachable_redis_fails_pings_and_calls_without_the_password(
    keys: dict[str, Any], cluster_name: str
) -> None:
    broker = get_broker(load_config({"name": cluster_name, "secret_key": SECRET, **keys}))
    try:
        assert broker.ping() is False
        for call in (lambda: broker.enqueue(b"x"), lambda: broker.receive(timeout=0)):
            with pytest.raises(BrokerUnavailable) as caught:
                call()
            assert "127.0.0.1:1" in str(caught.value)
            assert "********" in str(caught.value)
            assert "s3cret" not in str(caught.value)
    finally:
        broker.close()


@pytest.mark.redis
def test_other_redis_errors_are_broker_errors(
    config: Config, redis_client: redis.Redis, brokers: list[RedisBroker]
) -> None:
    broker = RedisBroker(config)
    brokers.append(broker)
    redis_client.set(broker.stream, b"not a stream")

    with pytest.raises(BrokerError) as caught:
        broker.enqueue(b"x")
    assert not isinstance(caught.value, BrokerUnavailable)
    assert config.name in str(caught.value)


@pytest.mark.redis
def test_extend_never_takes_back_a_package_another_consumer_reclaimed(
    redis_url: str, cluster_name: str, redis_client: redis.Redis, brokers: list[RedisBroker]
) -> None:
    config = load_config(
        {"name": cluster_name, "broker": redis_url, "secret_key": SECRET, "retry": 0.3}
    )
    late, other = RedisBroker(config), RedisBroker(config)
    brokers.extend([late, other])
    late.enqueue(b"slow")
    (held,) = late.receive(timeout=0)
    time.sleep(0.4)
    (reclaimed,) = other.receive(timeout=1)

    late.extend([held.ack_id])  # too late: the lease was lost

    assert reclaimed.ack_id == held.ack_id
    assert consumers(redis_client, other) == {other.consumer: 1, late.consumer: 0}


@pytest.mark.redis
def test_close_leaves_the_group_unless_the_consumer_holds_packages(
    config: Config, redis_client: redis.Redis, brokers: list[RedisBroker]
) -> None:
    holder, idle = RedisBroker(config), RedisBroker(config)
    brokers.extend([holder, idle])
    holder.enqueue_many([b"held", b"done"])
    holder.receive(count=1, timeout=0)
    (done,) = idle.receive(timeout=0)
    idle.acknowledge(done.ack_id)
    assert consumers(redis_client, holder) == {holder.consumer: 1, idle.consumer: 0}

    idle.close()
    holder.close()

    # The held package stays pending so that another cluster can reclaim it.
    assert consumers(redis_client, holder) == {holder.consumer: 1}


@pytest.mark.redis
def test_acknowledging_thousands_at_once_removes_them_all(
    config: Config, redis_client: redis.Redis, brokers: list[RedisBroker]
) -> None:
    # More ids than one Lua unpack() takes: the script works through them in chunks.
    broker = RedisBroker(config)
    brokers.append(broker)
    broker.enqueue_many([b"p%d" % i for i in range(8500)])
    delivered = broker.receive(count=8500, timeout=1)
    assert len(delivered) == 8500
    broker.acknowledge_many([d.ack_id for d in delivered])
    assert redis_client.xlen(broker.stream) == 0
    assert redis_client.xpending(broker.stream, broker.group)["pending"] == 0


@pytest.mark.redis
@pytest.mark.parametrize("script_flags", [True, False], ids=["script", "pipeline"])
def test_enqueue_many_queues_in_order_in_one_step_on_any_server(
    config: Config, brokers: list[RedisBroker], script_flags: bool
) -> None:
    broker = RedisBroker(config)
    brokers.append(broker)
    # Redis 7 reads the script's shebang; an older server gets the MULTI/EXEC pipeline.
    broker._script_flags = script_flags
    packages = [b"%d" % i for i in range(2500)]
    ids = broker.enqueue_many(packages)
    assert len(ids) == len(set(ids)) == 2500
    assert broker.enqueue_many([]) == []
    received = broker.receive(count=3000, timeout=0)
    assert [d.package for d in received] == packages
    assert [d.ack_id for d in received] == ids
    broker.acknowledge_many(ids)


@pytest.mark.redis
def test_enqueue_many_works_for_a_user_whose_acl_denies_info(
    config: Config, redis_client: redis.Redis, cluster_name: str
) -> None:
    user, password = f"{cluster_name}-noinfo", "noinfo-secret"
    redis_client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
        commands=["+@all", "-info"],
    )  # fmt: skip
    try:
        url = config.broker_url.replace("redis://", f"redis://{user}:{password}@", 1)
        broker = RedisBroker(load_config({**config.as_dict(masked=False), "broker": url}))
        try:
            ids = broker.enqueue_many([b"a", b"b", b"c"])
            assert broker._script_flags is False  # INFO refused: the pipeline was used
            received = broker.receive(count=5, timeout=0)
            assert [d.ack_id for d in received] == ids
            assert [d.package for d in received] == [b"a", b"b", b"c"]
            broker.acknowledge_many(ids)
        finally:
            broker.delete_queue()  # while its user exists: deleting the user ends its links
            broker.close()
    finally:
        redis_client.acl_deluser(user)
    assert redis_client.keys(f"qengine:{cluster_name}:*") == []
