"""System checks: problems ``manage.py check`` reports before a cluster runs into them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from qengine.errors import ConfigError

from .conf import q_cluster
from .db import alias_of, vendor_problem


@checks.register()
def check_settings(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    try:
        secret = getattr(settings, "SECRET_KEY", None)
    except ImproperlyConfigured:  # Django refuses to even read an empty SECRET_KEY
        secret = None
    if not secret and not q_cluster().get("secret_key"):
        messages.append(
            checks.Error(
                "SECRET_KEY is empty: qdjango signs task packages with it",
                hint="Set SECRET_KEY (or Q_CLUSTER['secret_key']).",
                id="qdjango.E001",
            )
        )
    try:
        from qengine.runtime import get_config

        config = get_config()
    except ConfigError as exc:
        messages.append(checks.Error(str(exc), id="qdjango.E002"))
        return messages
    except ImproperlyConfigured as exc:
        if not messages:
            messages.append(checks.Error(str(exc), id="qdjango.E002"))
        return messages
    messages += _database_messages(config)
    if not getattr(settings, "USE_TZ", True):
        messages.append(
            checks.Warning(
                "USE_TZ is False: the engine stores aware UTC times, which Django then "
                "shows without their zone",
                hint="Set USE_TZ = True.",
                id="qdjango.W001",
            )
        )
    from .cache import django_cache

    cache = django_cache(str(config.cache)) if config.cache else None
    if cache is not None and cache.is_local and config.cached:
        messages.append(
            checks.Warning(
                f"the cache {config.cache!r} is a local-memory cache: cached results "
                "written by a cluster are invisible to other processes",
                hint="Use a shared cache (Redis, Memcached, database) for Q_CLUSTER['cache'].",
                id="qdjango.W002",
            )
        )
    return messages


SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
}
"""What a SQLite database shared by a cluster and the web processes should be opened with."""


def _database_messages(config: Any) -> list[checks.CheckMessage]:
    """The databases holding qdjango's tables (store, ``orm`` broker): kind and SQLite set-up."""
    messages: list[checks.CheckMessage] = []
    aliases = sorted({a for a in (alias_of(config.store), alias_of(config.broker_url)) if a})
    for alias in aliases:
        conn = connections[alias]
        unsupported = vendor_problem(conn)
        if unsupported:
            messages.append(
                checks.Error(
                    unsupported,
                    hint="Point Q_CLUSTER['store'] (or your router) at a supported database.",
                    id="qdjango.E003",
                )
            )
        elif conn.vendor == "sqlite" and not config.sync and not _sqlite_ready(conn):
            messages.append(
                checks.Warning(
                    f"Django database {alias!r} is SQLite without write-ahead logging and a busy "
                    "timeout: a cluster and the web processes writing to it at once will "
                    "wait on, or fail with, 'database is locked'",
                    hint=f'Add to DATABASES[{alias!r}]: "OPTIONS": {SQLITE_OPTIONS!r}',
                    id="qdjango.W003",
                )
            )
    return messages


def _sqlite_ready(conn: Any) -> bool:
    options = conn.settings_dict.get("OPTIONS") or {}
    init = str(options.get("init_command", "")).lower().replace(" ", "")
    return "journal_mode=wal" in init and "timeout" in options
