"""What only the SQS broker does: size limit, batches of 10, queue names, leases, config."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("boto3")

import boto3

from qengine.brokers import broker_class, broker_kind
from qengine.brokers.sqs import MAX_MESSAGE_BYTES, SQSBroker, queue_name, visibility_s
from qengine.config import Config, ConfigWarning, load_config
from qengine.errors import BrokerUnavailable, ConfigError, PackageTooLarge
from qengine.runtime import get_broker
from tests.servers import SQS_KEYS, Server

from .conftest import SECRET


@pytest.fixture
def sqs_keys(sqs_server: Server) -> dict[str, Any]:
    return {"sqs": {**SQS_KEYS, "endpoint_url": sqs_server.url}, "secret_key": SECRET}


@pytest.fixture
def brokers() -> Iterator[list[SQSBroker]]:
    """SQS brokers a test made; their queues are deleted afterwards."""
    made: list[SQSBroker] = []
    yield made
    for broker in made:
        broker.delete_queue()
        broker.close()


@pytest.fixture
def make(sqs_keys: dict[str, Any], cluster_name: str, brokers: list[SQSBroker]) -> Any:
    def make(name: str | None = None, **keys: Any) -> SQSBroker:
        broker = get_broker(load_config({"name": name or cluster_name, **sqs_keys, **keys}))
        assert isinstance(broker, SQSBroker)
        brokers.append(broker)
        return broker

    return make


def sqs_client(server: Server) -> Any:
    return boto3.session.Session(
        region_name=SQS_KEYS["aws_region"],
        aws_access_key_id=SQS_KEYS["aws_access_key_id"],
        aws_secret_access_key=SQS_KEYS["aws_secret_access_key"],
    ).client("sqs", endpoint_url=server.url)


# -- without a server ---------------------------------------------------------------


def test_valid_cluster_names_are_the_queue_names() -> None:
    for name in ("default", "t-0123abcd", "Big_Cluster-2", "x" * 80):
        assert queue_name(name) == name


def test_other_names_are_mapped_to_distinct_valid_queue_names() -> None:
    names = ["my.cluster", "my:cluster", "my cluster", "ünïcode", "x" * 81, "a" * 100 + "."]
    mapped = [queue_name(name) for name in names]

    for name, queue in zip(names, mapped, strict=True):
        assert len(queue) <= 80
        assert queue.replace("_", "").replace("-", "").isalnum()
        assert queue.isascii()
        assert queue == queue_name(name)  # stable
    assert mapped[0].startswith("my_cluster-")
    assert len(set(mapped)) == len(names)


def test_retry_becomes_a_whole_second_visibility_timeout_within_sqs_limits() -> None:
    assert visibility_s(0.5) == 1
    assert visibility_s(60) == 60
    assert visibility_s(90.2) == 91
    assert visibility_s(10**6) == 43_200


@pytest.mark.parametrize(
    ("sqs", "message"),
    [
        ("us-east-1", "must be a dict"),
        ({"region": "us-east-1"}, "unknown entry 'region'"),
        ({"aws_region": ""}, "'aws_region' must be a non-empty string"),
        ({"aws_region": "eu-west-1", "region_name": "eu-west-1"}, "keep one"),
        ({"aws_access_key_id": "AKIA"}, "together"),
        ({"aws_secret_access_key": "hush"}, "together"),
        ({"endpoint_url": "localhost:4566"}, "http"),
    ],
)
def test_bad_sqs_settings_are_config_errors_naming_the_key(sqs: Any, message: str) -> None:
    with pytest.raises(ConfigError, match="'sqs'") as caught:
        load_config({"sqs": sqs})
    assert message in str(caught.value)
    assert "hush" not in str(caught.value)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({"broker": "redis://127.0.0.1:6379/0"}, "'broker'"),
        ({"orm": "default"}, "'orm'"),
        ({"mongo": "mongodb://127.0.0.1"}, "'mongo'"),
    ],
)
def test_sqs_with_another_broker_key_is_a_config_error(other: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=f"'sqs' and {named} both choose the broker"):
        load_config({"sqs": {}, **other})


def test_sqs_selects_the_sqs_broker_and_a_redis_cache_may_stay() -> None:
    config = load_config({"sqs": {"aws_region": "eu-west-1"}, "redis": {"host": "127.0.0.1"}})
    assert broker_kind(config).name == "sqs"
    custom = load_config({"sqs": {}, "broker_class": "tests.brokers.custom.MemoryBroker"})
    assert broker_class(custom).__name__ == "MemoryBroker"


def test_secrets_are_masked_and_kept_out_of_repr() -> None:
    config = load_config({"sqs": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "hush"}})

    assert config.as_dict()["sqs"] == {
        "aws_access_key_id": "AKIA",
        "aws_secret_access_key": "********",
    }
    assert "hush" not in repr(config)


def test_the_environment_gives_sqs_settings_as_json() -> None:
    config = load_config(environ={"QENGINE_SQS": '{"aws_region": "eu-west-1"}'})
    assert config.sqs == {"aws_region": "eu-west-1"}


def test_bulk_over_ten_warns_and_is_capped() -> None:
    with pytest.warns(ConfigWarning, match="10"):
        Config(sqs={"aws_region": "eu-west-1"}, bulk=25)


def test_no_region_anywhere_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(ConfigError, match="aws_region"):
        get_broker(load_config({"sqs": {}, "secret_key": SECRET}))


def test_a_package_over_256_kib_is_refused_before_anything_is_sent() -> None:
    # The endpoint is never reached: the size is checked first.
    config = load_config(
        {"sqs": {**SQS_KEYS, "endpoint_url": "http://127.0.0.1:9"}, "secret_key": SECRET}
    )
    broker = get_broker(config)
    too_big = b"x" * (broker.package_limit_bytes + 1)

    with pytest.raises(PackageTooLarge, match="256 KiB") as caught:
        broker.enqueue(too_big)
    assert config.name in str(caught.value)
    with pytest.raises(PackageTooLarge):
        broker.enqueue_many([b"small", too_big])
    assert MAX_MESSAGE_BYTES - 32 < broker.package_limit_bytes < MAX_MESSAGE_BYTES
    broker.close()


def test_an_unreachable_endpoint_is_broker_unavailable() -> None:
    config = load_config(
        {"sqs": {**SQS_KEYS, "endpoint_url": "http://127.0.0.1:9"}, "secret_key": SECRET}
    )
    broker = get_broker(config)

    assert broker.ping() is False
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:9"):
        broker.enqueue(b"lost")
    broker.close()


# -- against the server -------------------------------------------------------------


@pytest.mark.sqs
def test_a_package_at_the_limit_goes_through(make: Any) -> None:
    broker = make()
    package = b"\x00\xff" * (broker.package_limit_bytes // 2)

    broker.enqueue(package)

    assert [d.package for d in broker.receive(timeout=1)] == [package]


@pytest.mark.sqs
def test_batches_split_at_ten_packages_and_256_kib(make: Any) -> None:
    broker = make()
    big = [bytes([i]) * 100_000 for i in range(5)]  # ~500 KB: three batches at least
    small = [b"%d" % i for i in range(23)]  # three batches of at most 10

    ids = broker.enqueue_many(big) + broker.enqueue_many(small)

    assert len(set(ids)) == 28
    delivered = []
    while batch := broker.receive(count=10, timeout=0):
        delivered.extend(batch)
    assert sorted(d.package for d in delivered) == sorted(big + small)


@pytest.mark.sqs
def test_receive_takes_at_most_ten(make: Any) -> None:
    with pytest.warns(ConfigWarning):
        broker = make(bulk=25)
    broker.enqueue_many([b"%d" % i for i in range(15)])

    assert len(broker.receive(timeout=0)) == 10
    assert len(broker.receive(count=50, timeout=0)) == 5


@pytest.mark.sqs
def test_the_queue_is_created_on_first_use_under_its_mapped_name(
    make: Any, sqs_server: Server, cluster_name: str
) -> None:
    name = f"{cluster_name}.with:odd chars"
    broker = make(name)
    client = sqs_client(sqs_server)
    try:
        assert broker.queue_size() == 0  # measuring does not create it
        assert broker.queue_name not in str(client.list_queues(QueueNamePrefix=cluster_name))

        broker.enqueue(b"first")

        urls = client.list_queues(QueueNamePrefix=cluster_name)["QueueUrls"]
        assert [url.rsplit("/", 1)[1] for url in urls] == [queue_name(name)]
        attributes = client.get_queue_attributes(QueueUrl=urls[0], AttributeNames=["All"])
        assert attributes["Attributes"]["MessageRetentionPeriod"] == "1209600"
        assert broker.queue_name in broker.info()
    finally:
        client.close()


@pytest.mark.sqs
def test_the_package_travels_as_a_binary_attribute(make: Any, sqs_server: Server) -> None:
    broker = make()
    broker.enqueue(b"\x00binary\xff")
    client = sqs_client(sqs_server)
    try:
        url = client.get_queue_url(QueueName=broker.queue_name)["QueueUrl"]
        (message,) = client.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    finally:
        client.close()

    assert message["MessageAttributes"]["p"] == {
        "DataType": "Binary",
        "BinaryValue": b"\x00binary\xff",
    }


@pytest.mark.sqs
def test_a_foreign_message_is_delivered_as_its_body_and_fails_verification(
    make: Any, sqs_server: Server
) -> None:
    broker = make()
    broker.enqueue(b"ours")  # creates the queue
    client = sqs_client(sqs_server)
    try:
        url = client.get_queue_url(QueueName=broker.queue_name)["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody="not a package")
    finally:
        client.close()

    packages = [d.package for d in broker.receive(count=2, timeout=1)]

    assert sorted(packages) == [b"not a package", b"ours"]


@pytest.mark.sqs
def test_delete_before_delivery_drops_the_package_when_it_arrives(make: Any) -> None:
    broker = make()
    doomed, _kept = broker.enqueue_many([b"doomed", b"kept"])

    broker.delete(doomed)

    assert [d.package for d in broker.receive(count=2, timeout=0)] == [b"kept"]
    assert (broker.queue_size(), broker.lock_size()) == (0, 1)


@pytest.mark.sqs
def test_a_lease_that_ran_out_is_not_extended_by_its_old_holder(make: Any) -> None:
    old, new = make(retry=1), make(retry=1)
    old.enqueue(b"task")
    (first,) = old.receive(timeout=0)
    time.sleep(1.1)
    (second,) = new.receive(timeout=1)

    time.sleep(0.6)
    old.extend([first.ack_id])  # its receipt must not push the new lease past its end
    time.sleep(0.55)

    again = old.receive(timeout=0.2)
    assert [(d.package, d.count) for d in again] == [(b"task", 3)]
    assert second.count == 2


@pytest.mark.sqs
def test_credentials_may_come_from_boto3s_own_chain(
    sqs_server: Server, cluster_name: str, monkeypatch: pytest.MonkeyPatch, brokers: list[Any]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = load_config(
        {"name": cluster_name, "sqs": {"endpoint_url": sqs_server.url}, "secret_key": SECRET}
    )
    broker = get_broker(config)
    brokers.append(broker)

    broker.enqueue(b"chained")

    assert [d.package for d in broker.receive(timeout=1)] == [b"chained"]


@pytest.mark.sqs
def test_an_existing_client_is_used_and_left_open(
    sqs_server: Server, sqs_keys: dict[str, Any], cluster_name: str
) -> None:
    client = sqs_client(sqs_server)
    broker = SQSBroker(load_config({"name": cluster_name, **sqs_keys}), connection=client)
    try:
        broker.enqueue(b"shared")
        broker.close()

        assert [d.package for d in broker.receive(timeout=1)] == [b"shared"]
    finally:
        broker.delete_queue()
        client.close()


def test_an_idle_pusher_long_polls_instead_of_asking_every_poll(make: Any) -> None:
    from qengine.cluster.cluster import Cluster
    from qengine.cluster.pusher import Pusher
    from qengine.runtime import get_signer, get_store

    broker = make(poll=0.05)
    broker.ping()  # the queue exists before counting
    cluster = Cluster(broker.config)
    pusher = Pusher(
        config=broker.config, broker=broker, signer=get_signer(broker.config),
        store=get_store(broker.config), holdings=cluster.holdings, counters=cluster.counters,
        dispatch=lambda items: None, give_up=cluster.give_up, stop_event=cluster.stop_event,
        label=cluster.label,
    )  # fmt: skip
    asked: list[int] = []
    receive_message = broker.connection.receive_message

    def counting(**kwargs: Any) -> Any:
        asked.append(kwargs["WaitTimeSeconds"])
        return receive_message(**kwargs)

    broker.connection.receive_message = counting
    started = time.monotonic()
    while time.monotonic() - started < 2:
        pusher.tick()
    # Two requests a second at most (a long poll, then a look at its deadline); short
    # polls every 50 ms would have made about forty.
    assert 2 <= len(asked) <= 6
    assert asked.count(1) >= 1
