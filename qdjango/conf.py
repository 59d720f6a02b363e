"""Django settings → the engine's configuration, read on first use, never at import.

``Q_CLUSTER`` holds the engine's keys (the spec's names); ``SECRET_KEY``
signs packages; the store is a Django database (``store``: an alias of
``DATABASES``, default ``"default"``, or a SQLAlchemy URL); ``orm`` names
the database alias the SQL broker uses; cached results go to Django's
cache framework (``cache``: a ``CACHES`` alias, default ``"default"``).
Environment variables ``QENGINE_<KEY>`` and a TOML file still apply, below
``Q_CLUSTER``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from sqlalchemy.engine import URL

from qengine.config import Config, get_config, load_config
from qengine.errors import ConfigError
from qengine.status import STATES

__all__ = ["Conf", "database_url", "load", "q_cluster"]

_DRIVERS = {
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.postgresql": "postgresql+psycopg",
    "django.db.backends.mysql": "mysql+pymysql",
}


def database_url(alias: str) -> str:
    """The SQLAlchemy URL of a Django database alias, as Django connects to it now.

    Read from the connection, not from ``settings.DATABASES``, so a test
    database (``test_<name>``) is followed once the test runner created it.
    """
    if alias not in connections.settings:
        raise ConfigError(
            f"no Django database named {alias!r}; DATABASES has {sorted(connections.settings)}"
        )
    db = connections[alias].settings_dict
    engine = db["ENGINE"]
    driver = _DRIVERS.get(engine)
    if driver is None:
        raise ConfigError(
            f"Django database {alias!r} uses {engine!r}; qdjango supports "
            f"{', '.join(sorted(_DRIVERS))}"
        )
    name = str(db["NAME"] or "")
    if driver == "sqlite":
        if not name or name == ":memory:" or "mode=memory" in name:
            raise ConfigError(
                f"Django database {alias!r} is an in-memory SQLite database, which a "
                "cluster cannot share; give it a file (and TEST['NAME'] a file in tests)"
            )
        return URL.create("sqlite", database=name).render_as_string(hide_password=False)
    url = URL.create(
        driver,
        username=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=int(db["PORT"]) if db.get("PORT") else None,
        database=name,
    )
    return url.render_as_string(hide_password=False)


def q_cluster() -> dict[str, Any]:
    """``settings.Q_CLUSTER`` as a dict (empty when not set)."""
    value = getattr(settings, "Q_CLUSTER", None) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"settings.Q_CLUSTER must be a dict, not {type(value).__name__}")
    return dict(value)


def load() -> Config:
    """The engine configuration of this Django project."""
    keys = q_cluster()
    store = keys.get("store", "default")
    if isinstance(store, str) and store in connections.settings:
        keys["store"] = database_url(store)
    orm = keys.get("orm")
    if orm and not keys.get("broker"):
        keys["broker"] = database_url(orm)
    if not keys.get("secret_key"):
        try:
            keys["secret_key"] = getattr(settings, "SECRET_KEY", None) or None
        except ImproperlyConfigured:  # an empty SECRET_KEY; signing then says what is missing
            keys["secret_key"] = None
    keys.setdefault("cache", "default")
    return load_config(keys)


class _ConfMeta(type):
    def __getattr__(cls, attr: str) -> Any:
        key = attr.lower()
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
