"""Choosing a broker from the configuration, including a user's class named by ``broker_class``."""

from __future__ import annotations

from typing import Any

import pytest

import qengine
from qengine.brokers.sql import SQLBroker
from qengine.config import load_config
from qengine.errors import ConfigError
from qengine.runtime import get_broker, new_broker

from .conftest import SECRET
from .custom import MemoryBroker


@pytest.mark.parametrize(
    "path",
    [
        "tests.brokers.no_such_module.Broker",
        "tests.brokers.custom.NoSuchClass",
        "tests.brokers.custom.NotABroker",
    ],
)
def test_a_bad_broker_class_is_a_config_error_naming_the_key(path: str) -> None:
    config = load_config({"broker_class": path, "secret_key": SECRET})

    with pytest.raises(ConfigError, match="broker_class") as caught:
        get_broker(config)
    assert path in str(caught.value)


def test_broker_class_loads_the_users_broker(cluster_name: str) -> None:
    config = load_config(
        {"name": cluster_name, "broker_class": "tests.brokers.custom.MemoryBroker"}
    )

    broker = get_broker(config)

    assert type(broker) is MemoryBroker
    assert broker.list_key == cluster_name
    assert broker.info() == "Memory broker"


def test_a_database_url_selects_the_sql_broker(tmp_path: Any, cluster_name: str) -> None:
    url = f"sqlite:///{tmp_path}/broker.sqlite3"
    config = load_config({"name": cluster_name, "broker": url, "secret_key": SECRET})

    broker = new_broker(config, "another-queue")

    assert isinstance(broker, SQLBroker)
    assert broker.list_key == "another-queue"
    assert broker.info().startswith("SQL sqlite ")


def test_get_broker_is_always_the_shared_one_and_new_broker_a_private_one(
    tmp_path: Any, cluster_name: str
) -> None:
    config = load_config({"name": cluster_name, "store": f"sqlite:///{tmp_path}/q.sqlite3"})
    qengine.configure(config)

    shared = get_broker()
    assert get_broker(qengine.get_config()) is shared  # the same configuration, the same one
    private = new_broker()
    try:
        assert private is not shared
        assert new_broker() is not private
    finally:
        private.close()
    qengine.configure(config)  # a new configuration (even an equal one): a new shared broker
    assert get_broker() is not shared
