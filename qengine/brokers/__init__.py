"""Brokers, registered by kind: each kind says which configurations select it.

A new broker is one module and one ``register_broker`` call; nothing outside
this package asks which kind of broker a configuration has. What the rest
of the engine needs to know of a broker (may it enqueue inside the store's
transaction, does it notify waiters, where do clusters publish status…) it
asks the broker class (``broker_class(config)``), whose base class answers
for brokers that do not say.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from ..config import Config
from ..errors import ConfigError
from ..redis_conn import is_redis_url
from .base import Broker, Delivery

__all__ = [
    "ENTRY_POINT_GROUP",
    "Broker",
    "BrokerKind",
    "Delivery",
    "broker_class",
    "broker_kind",
    "make_broker",
    "register_broker",
]


@dataclass(frozen=True, slots=True)
class BrokerKind:
    """A kind of broker: its name, which configurations select it, and how to load it."""

    name: str
    matches: Callable[[Config], bool]
    """True for a configuration that selects this kind (a URL scheme, a key that is set…)."""
    load: Callable[[], type[Broker]]
    """Imports the class on first use: optional client libraries load only when chosen."""


_kinds: list[BrokerKind] = []


def register_broker(
    name: str,
    matches: Callable[[Config], bool],
    load: Callable[[], type[Broker]] | type[Broker],
) -> None:
    """Make the broker ``load`` gives the one for every configuration ``matches`` accepts.

    Kinds are tried newest first, so a registration can claim a URL scheme
    before the SQL broker, which takes every URL nobody else claims.
    """
    loader = load if not isinstance(load, type) else (lambda: load)
    _kinds.insert(0, BrokerKind(name, matches, loader))  # type: ignore[arg-type]


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


ENTRY_POINT_GROUP = "qengine.brokers"
"""Packages name a module here that calls ``register_broker`` when imported, so that a
cluster started from the command line knows their kinds without importing them itself."""

_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:  # a broken plugin must name itself, not break every broker
            raise ConfigError(
                f"the broker plugin {entry.name!r} ({entry.value}) cannot be loaded: {exc}"
            ) from exc


def broker_kind(config: Config) -> BrokerKind:
    """The registered kind that ``config`` selects (``broker_class`` names no kind)."""
    _load_plugins()
    for kind in _kinds:
        if kind.matches(config):
            return kind
    raise ConfigError(f"no broker is registered for {config.broker_url!r}")  # the SQL one takes all


def broker_class(config: Config) -> type[Broker]:
    """The class of ``config``'s broker: ``broker_class`` if set, else the kind it selects."""
    if config.broker_class:
        return _load_class(config.broker_class)
    return broker_kind(config).load()


def make_broker(config: Config, list_key: str | None = None) -> Broker:
    """A new broker instance for ``config`` with its own connections (see ``qengine.runtime``)."""
    return broker_class(config)(config, list_key)


# -- the built-in kinds, weakest claim first (later registrations are tried first) ----


def _sql() -> type[Broker]:
    from .sql import SQLBroker

    return SQLBroker


def _orm() -> type[Broker]:
    raise ConfigError(
        "config key 'orm' names a Django database: the orm broker needs qdjango "
        "(add 'qdjango' to INSTALLED_APPS), or set 'broker' to a database URL instead"
    )


def _redis() -> type[Broker]:
    from .redis import RedisBroker

    return RedisBroker


def _needs(extra: str, key: str, library: str, load: Callable[[], type[Broker]]) -> type[Broker]:
    try:
        return load()
    except ImportError as exc:
        raise ConfigError(
            f"config key {key!r} needs {library}, which cannot be imported ({exc}): "
            f"pip install 'qengine[{extra}]'"
        ) from exc


def _mongo() -> type[Broker]:
    def load() -> type[Broker]:
        from .mongo import MongoBroker

        return MongoBroker

    return _needs("mongo", "mongo", "pymongo", load)


def _sqs() -> type[Broker]:
    def load() -> type[Broker]:
        from .sqs import SQSBroker

        return SQSBroker

    return _needs("sqs", "sqs", "boto3", load)


register_broker("sql", lambda config: True, _sql)
register_broker(
    "redis",
    lambda config: bool(config.django_redis) or is_redis_url(config.broker_url),
    _redis,
)
# qdjango resolves the alias into ``broker`` (that Django database, through the SQL
# broker); unresolved, the key is an error.
register_broker("orm", lambda config: bool(config.orm) and bool(config.broker), _sql)
register_broker("orm", lambda config: bool(config.orm) and not config.broker, _orm)
# broker="mongodb://…" works like mongo="mongodb://…".
register_broker(
    "mongo",
    lambda config: (
        config.mongo is not None or config.broker_url.startswith(("mongodb://", "mongodb+srv://"))
    ),
    _mongo,
)
register_broker("sqs", lambda config: config.sqs is not None, _sqs)
