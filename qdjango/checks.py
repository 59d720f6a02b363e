"""System checks: problems ``manage.py check`` reports before a cluster runs into them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from qengine.errors import ConfigError

from .conf import q_cluster


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
        from qengine.config import get_config

        config = get_config()
    except ConfigError as exc:
        messages.append(checks.Error(str(exc), id="qdjango.E002"))
        return messages
    except ImproperlyConfigured as exc:
        if not messages:
            messages.append(checks.Error(str(exc), id="qdjango.E002"))
        return messages
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
