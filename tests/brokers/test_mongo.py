"""What only the MongoDB broker does: indexes, database choice, owned leases, config."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

if not os.environ.get("CI"):  # in CI a missing extra must fail, not skip
    pytest.importorskip("pymongo")

import pymongo

from qengine.brokers import broker_kind
from qengine.brokers.mongo import COLLECTION, DEFAULT_DATABASE, INDEX, MongoBroker
from qengine.config import load_config
from qengine.errors import BrokerError, BrokerUnavailable, ConfigError, PackageTooLarge
from qengine.runtime import get_broker
from tests.servers import Server

from .conftest import SECRET


@pytest.fixture
def database(mongo_server: Server) -> Iterator[str]:
    """A database of its own, dropped afterwards: index tests start from nothing."""
    name = f"qengine-{uuid.uuid4().hex[:8]}"
    yield name
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.url)
    client.drop_database(name)
    client.close()


@pytest.fixture
def make(mongo_server: Server, database: str, cluster_name: str) -> Iterator[Any]:
    made: list[MongoBroker] = []

    def make(**keys: Any) -> MongoBroker:
        config = load_config(
            {
                "name": cluster_name,
                "mongo": mongo_server.url,
                "mongo_db": database,
                "secret_key": SECRET,
                **keys,
            }
        )
        broker = get_broker(config)
        assert isinstance(broker, MongoBroker)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


# -- without a server ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "database"),
    [
        ({"mongo": "mongodb://127.0.0.1:27017/tasks"}, "tasks"),
        ({"mongo": "mongodb://127.0.0.1:27017"}, DEFAULT_DATABASE),
        ({"mongo": {"host": "127.0.0.1", "port": 27017}}, DEFAULT_DATABASE),
        ({"mongo": {"host": "mongodb://127.0.0.1/from-host"}}, "from-host"),
        ({"mongo": "mongodb://127.0.0.1/tasks", "mongo_db": "chosen"}, "chosen"),
        ({"broker": "mongodb://127.0.0.1:27017/by-url"}, "by-url"),
        ({"broker": "mongodb://127.0.0.1:27017"}, DEFAULT_DATABASE),
    ],
)
def test_the_database_is_mongo_db_else_the_uris_else_django_q(
    keys: dict[str, Any], database: str
) -> None:
    broker = get_broker(load_config({**keys, "secret_key": SECRET}))

    assert isinstance(broker, MongoBroker)
    assert broker.database == database
    assert broker.collection.name == COLLECTION
    broker.close()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"mongo": "redis://127.0.0.1"}, "mongodb://"),
        ({"mongo": 27017}, "must be a dict"),
        ({"mongo": {1: "x"}}, "must be a dict"),
        ({"mongo": {}, "mongo_db": "a.b"}, "'mongo_db'"),
        ({"mongo": {}, "mongo_db": "x" * 64}, "'mongo_db'"),
        ({"mongo": {}, "mongo_db": ""}, "'mongo_db'"),
        ({"mongo": {}, "sqs": {}}, "both choose the broker"),
        ({"mongo": {}, "broker": "redis://127.0.0.1"}, "both choose the broker"),
        ({"mongo": {}, "broker": "mongodb://127.0.0.1"}, "both choose the broker"),
    ],
)
def test_bad_mongo_settings_are_config_errors(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="mongo") as caught:
        load_config(keys)
    assert message in str(caught.value)


def test_a_uri_password_stays_out_of_errors_and_as_dict() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"mongo": "mongo://user:hush@host"})
    assert "hush" not in str(caught.value)

    uri = load_config({"mongo": "mongodb://user:hush@h1:1,h2:2/db"})
    as_dict = {"host": "mongodb://u:hush@h/db", "password": "hush"}
    keys = load_config({"mongo": as_dict})
    assert uri.as_dict()["mongo"] == "mongodb://user:********@h1:1,h2:2/db"
    assert "hush" not in str(keys.as_dict()["mongo"])
    assert "hush" not in repr(uri) + repr(keys)
    by_url = load_config({"broker": "mongodb://user:hush@h1:1,h2:2/db"})
    assert "hush" not in str(by_url.as_dict()["broker"])


def test_the_environment_gives_mongo_as_a_uri_or_json() -> None:
    env = {"QENGINE_MONGO": "mongodb://127.0.0.1/x", "QENGINE_MONGO_DB": "tasks"}
    config = load_config(environ=env)
    assert (config.mongo, config.mongo_db, broker_kind(config).name) == (
        "mongodb://127.0.0.1/x",
        "tasks",
        "mongo",
    )
    assert load_config(environ={"QENGINE_MONGO": '{"port": 27018}'}).mongo == {"port": 27018}


def test_bad_client_arguments_are_config_errors_at_get_broker() -> None:
    config = load_config({"mongo": {"no_such_option": 1}, "secret_key": SECRET})
    with pytest.raises(ConfigError, match="'mongo'"):
        get_broker(config)


def test_a_package_over_the_document_limit_is_refused_before_anything_is_sent() -> None:
    broker = get_broker(load_config({"mongo": "mongodb://127.0.0.1:9", "secret_key": SECRET}))
    too_big = b"x" * (broker.package_limit_bytes + 1)

    with pytest.raises(PackageTooLarge, match="16 MiB"):
        broker.enqueue(too_big)
    with pytest.raises(PackageTooLarge):
        broker.enqueue_many([b"small", too_big])
    broker.close()


def test_an_unreachable_server_is_broker_unavailable() -> None:
    uri = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200"
    broker = get_broker(load_config({"mongo": uri, "secret_key": SECRET}))

    assert broker.ping() is False
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:9"):
        broker.enqueue(b"lost")
    broker.close()


def test_a_receipt_of_another_broker_is_a_broker_error() -> None:
    broker = get_broker(load_config({"mongo": "mongodb://127.0.0.1:9", "secret_key": SECRET}))
    with pytest.raises(BrokerError, match="not a receipt"):
        broker.acknowledge("1-0")
    broker.close()


# -- against the server -------------------------------------------------------------


@pytest.mark.mongo
def test_indexes_are_created_on_first_use(make: Any) -> None:
    broker = make()
    assert COLLECTION not in broker.collection.database.list_collection_names()

    broker.enqueue(b"first")

    index = broker.collection.index_information()[INDEX]
    assert index["key"] == [("key", 1), ("lock", 1), ("_id", 1)]
    make().receive(timeout=0)  # a second instance finds it there: no error
    assert INDEX in broker.collection.index_information()


@pytest.mark.mongo
def test_a_document_records_its_lease_owner_and_deliveries(make: Any) -> None:
    broker = make(retry=30)
    ack_id = broker.enqueue(b"task")
    before = broker.collection.find_one()
    (delivery,) = broker.receive(timeout=0)
    after = broker.collection.find_one()

    assert (before["lock"], before["deliveries"], "owner" in before) == (None, 0, False)
    assert delivery.ack_id == ack_id == str(after["_id"])
    assert (after["deliveries"], after["owner"]) == (1, broker.consumer)
    assert after["lock"] is not None
    assert bytes(after["payload"]) == b"task"


@pytest.mark.mongo
def test_a_lease_that_ran_out_is_not_extended_by_its_old_owner(make: Any) -> None:
    old, new = make(retry=0.3), make(retry=5)
    old.enqueue(b"task")
    (first,) = old.receive(timeout=0)
    time.sleep(0.4)
    (second,) = new.receive(timeout=0)
    lock = new.collection.find_one()["lock"]

    old.extend([first.ack_id])

    assert new.collection.find_one()["lock"] == lock
    assert (second.count, new.lock_size()) == (2, 1)


@pytest.mark.mongo
def test_a_dict_with_a_uri_as_host_works_like_the_spec_says(
    mongo_server: Server, database: str, cluster_name: str
) -> None:
    config = load_config(
        {
            "name": cluster_name,
            "mongo": {"host": f"{mongo_server.url}/{database}"},
            "secret_key": SECRET,
        }
    )
    broker = get_broker(config)
    try:
        broker.enqueue(b"spec form")
        assert broker.database == database
        assert [d.package for d in broker.receive(timeout=0)] == [b"spec form"]
        assert broker.info().startswith("MongoDB ")
    finally:
        broker.delete_queue()
        broker.close()


@pytest.mark.mongo
def test_an_existing_client_is_used_and_left_open(
    mongo_server: Server, database: str, cluster_name: str
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_server.url)
    config = load_config(
        {"name": cluster_name, "mongo": {}, "mongo_db": database, "secret_key": SECRET}
    )
    broker = MongoBroker(config, connection=client)
    try:
        broker.enqueue(b"shared")
        broker.close()
        assert [d.package for d in broker.receive(timeout=0)] == [b"shared"]
        assert client.admin.command("ping")["ok"] == 1
    finally:
        broker.delete_queue()
        client.close()
