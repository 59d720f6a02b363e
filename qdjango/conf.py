"""Django settings → the engine's configuration, read on first use, never at import.

``Q_CLUSTER`` holds the engine's keys (the spec's names); ``SECRET_KEY``
signs packages and ``SECRET_KEY_FALLBACKS`` still verify them (unless
``Q_CLUSTER`` sets ``secret_key`` or ``secret_key_fallbacks``); the store
is a Django database, reached through Django's own connections
(``store``: an alias of ``DATABASES`` that pins the tables there; without
it the routers choose); ``orm`` names the database alias the SQL broker
uses; cached results go to Django's cache framework (``cache``: a
``CACHES`` alias, default ``"default"``); schedules run on the wall clock
of ``TIME_ZONE`` unless ``time_zone`` says otherwise. Environment variables
``QENGINE_<KEY>`` and a TOML file still apply, below ``Q_CLUSTER``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router

from qengine.config import Config, load_config
from qengine.errors import ConfigError
from qengine.runtime import get_config
from qengine.status import STATES

from .db import url_for

__all__ = ["Conf", "in_memory", "load", "q_cluster", "store_alias"]


def in_memory(alias: str) -> bool:
    """Whether a Django database is an in-memory SQLite database, which only one process sees.

    Read from the connection, not from ``settings.DATABASES``, so a test
    database (in memory by default on SQLite) is followed once the test
    runner made it. Fine for sync mode; a cluster cannot reach it.
    """
    conn = connections[alias]
    if conn.vendor != "sqlite":
        return False
    return bool(conn.is_in_memory_db())


def store_alias() -> str:
    """The Django database alias that holds qdjango's tables for this project.

    ``Q_CLUSTER['store']``, when it names a ``DATABASES`` alias, pins the
    tables there and wins over routers; otherwise the project's routers
    decide, as for any model (``db_for_write`` of the task model). Reads go
    to the same alias, so a result is read where it was written.
    """
    store = q_cluster().get("store")
    if isinstance(store, str) and store in connections.settings:
        return store
    if store is not None:
        raise ConfigError(
            f"Q_CLUSTER['store'] is {store!r}: not an alias of DATABASES "
            f"({', '.join(sorted(connections.settings))})"
        )
    # The model from the app registry, not by import: models import this module (OrmQ reads
    # the configuration), and settings are read after the apps are loaded anyway.
    return router.db_for_write(apps.get_model("qdjango", "Task")) or "default"


def q_cluster() -> dict[str, Any]:
    """``settings.Q_CLUSTER`` as a dict (empty when not set)."""
    value = getattr(settings, "Q_CLUSTER", None) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"settings.Q_CLUSTER must be a dict, not {type(value).__name__}")
    return dict(value)


def load() -> Config:
    """The engine configuration of this Django project.

    The store (and the ``orm`` broker) are Django databases reached through
    Django's own connections (``qdjango.db``); a SQLAlchemy URL as ``store``
    is refused, since it would open a second door to the same tables.
    """
    keys = q_cluster()
    keys["store"] = url_for(store_alias())
    orm = keys.get("orm")
    if orm and not keys.get("broker"):
        keys["broker"] = url_for(orm)
    if not keys.get("secret_key"):
        try:
            keys["secret_key"] = getattr(settings, "SECRET_KEY", None) or None
        except ImproperlyConfigured:  # an empty SECRET_KEY; signing then says what is missing
            keys["secret_key"] = None
        # Django's old keys are old values of the key that signs here; with a key of
        # its own in Q_CLUSTER they never signed a package, so they are not taken then.
        fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None)
        if fallbacks and "secret_key_fallbacks" not in keys:
            keys["secret_key_fallbacks"] = list(fallbacks)
    # Django's answers, below anything set for the engine (Q_CLUSTER, the environment, the
    # TOML file): cached results in the project's default cache, and schedules on Django's
    # wall clock, as django_q computed them in TIME_ZONE.
    defaults = {"cache": "default"}
    zone = getattr(settings, "TIME_ZONE", None)
    if zone:
        defaults["time_zone"] = zone
    return load_config(keys, defaults=defaults)


_SPEC_NAMES = {"prefix": "name", "cluster_name": "name", "compressed": "compress"}
"""django_q's ``Conf`` names that differ from the configuration keys."""


class _ConfMeta(type):
    def __getattr__(cls, attr: str) -> Any:
        key = attr.lower()
        key = _SPEC_NAMES.get(key, key)
        config = get_config()
        if hasattr(config, key):
            return getattr(config, key)
        raise AttributeError(f"Conf has no setting {attr!r}")


class Conf(metaclass=_ConfMeta):
    """django_q's ``Conf``: ``Conf.WORKERS``, ``Conf.PREFIX``… read the current configuration."""

    # Cluster states as ``Stat.status`` holds them; the spec's health check compares with these.
    STARTING, IDLE, WORKING, STOPPING, STOPPED = STATES

    @classmethod
    def config(cls) -> Config:
        return get_config()
