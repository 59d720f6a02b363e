"""Brokers: pick the one the configuration names (``get_broker``)."""

from __future__ import annotations

import importlib
import threading

from ..config import Config, get_config, on_reset
from ..errors import ConfigError
from .base import Broker, Delivery

__all__ = ["Broker", "Delivery", "get_broker"]

_shared: dict[int, Broker] = {}
_lock = threading.Lock()


def _load_class(path: str) -> type[Broker]:
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"config key 'broker_class' has the invalid value {path!r}: cannot import it ({exc})"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Broker)):
        raise ConfigError(
            f"config key 'broker_class' has the invalid value {path!r}: "
            "it must name a subclass of qengine.brokers.Broker"
        )
    return cls


def make_broker(config: Config, list_key: str | None = None) -> Broker:
    """A new broker instance for ``config`` (its own connections)."""
    kind = config.broker_kind
    if kind == "custom":
        assert config.broker_class is not None
        broker: Broker = _load_class(config.broker_class)(config, list_key)
        return broker
    if kind == "redis":
        from .redis import RedisBroker

        return RedisBroker(config, list_key)
    if kind == "sqs":
        try:
            from .sqs import SQSBroker
        except ImportError as exc:
            raise ConfigError(
                f"config key 'sqs' needs boto3, which cannot be imported ({exc}): "
                "pip install 'qengine[sqs]'"
            ) from exc
        return SQSBroker(config, list_key)
    if kind == "mongo":
        try:
            from .mongo import MongoBroker
        except ImportError as exc:
            raise ConfigError(
                f"config key 'mongo' needs pymongo, which cannot be imported ({exc}): "
                "pip install 'qengine[mongo]'"
            ) from exc
        return MongoBroker(config, list_key)
    if kind == "orm" and not config.broker:
        # qdjango resolves the alias into ``broker`` (that database's URL); then it is SQL.
        raise ConfigError(
            "config key 'orm' names a Django database: the orm broker needs qdjango "
            "(add 'qdjango' to INSTALLED_APPS), or set 'broker' to a database URL instead"
        )
    from .sql import SQLBroker

    return SQLBroker(config, list_key)


def get_broker(config: Config | None = None, list_key: str | None = None) -> Broker:
    """The broker of ``config`` (default: the current configuration).

    Without arguments one instance is shared per configuration, so repeated
    ``async_task`` calls reuse its connections.
    """
    if config is not None or list_key is not None:
        return make_broker(config or get_config(), list_key)
    current = get_config()
    with _lock:
        broker = _shared.get(id(current))
        if broker is None:
            _shared.clear()
            broker = _shared[id(current)] = make_broker(current)
        return broker


@on_reset
def _drop_shared() -> None:
    with _lock:
        for broker in _shared.values():
            broker.close()
        _shared.clear()
