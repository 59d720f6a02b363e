"""django_q's ``brokers`` module: the engine's brokers, and django-redis pools for them.

``Q_CLUSTER['django_redis'] = 'default'`` makes the Redis broker (and the
engine's other Redis users: result notifications, cluster status) use the
connection pool of that django-redis cache, so a project adds no Redis
connections of its own. The engine cannot import Django; ``apps.ready()``
registers ``django_redis_client`` with it.
"""

from __future__ import annotations

import redis
from django.core.cache import caches
from django.core.cache.backends.base import InvalidCacheBackendError
from django.utils.connection import ConnectionDoesNotExist

from qengine.brokers import Broker, Delivery
from qengine.config import Config
from qengine.errors import ConfigError
from qengine.runtime import get_broker as engine_get_broker
from qengine.runtime import new_broker

__all__ = ["Broker", "Delivery", "django_redis_client", "get_broker"]


def get_broker(list_key: str | None = None, config: Config | None = None) -> Broker:
    """The broker of the project's configuration, as ``django_q.brokers.get_broker``.

    Args:
        list_key: another queue name than the cluster's (django_q's only argument).
        config: another configuration than the project's.

    Without ``list_key`` one broker is shared per configuration, so a loop of
    ``async_task(..., broker=get_broker())`` reuses its connections; with it, the
    broker is new and its connections the caller's to close.
    """
    if list_key is not None:
        return new_broker(config, list_key)
    return engine_get_broker(config)


def django_redis_client(alias: str) -> redis.Redis:
    """The client of the django-redis cache ``alias``, on that cache's connection pool.

    Raises:
        ConfigError: ``CACHES`` has no such alias, it is not a django-redis
            cache, or django-redis is not installed.
    """
    try:
        from django_redis import get_redis_connection
    except ImportError as exc:
        raise ConfigError(
            f"config key 'django_redis' has the value {alias!r}, but django-redis is not "
            "installed (pip install django-redis)"
        ) from exc
    try:
        caches[alias]
    except (ConnectionDoesNotExist, InvalidCacheBackendError, KeyError) as exc:
        raise ConfigError(
            f"config key 'django_redis' has the value {alias!r}: no such cache in CACHES"
        ) from exc
    try:
        client: redis.Redis = get_redis_connection(alias)
    except NotImplementedError as exc:
        raise ConfigError(
            f"config key 'django_redis' has the value {alias!r}: that cache is not a "
            "django-redis cache (BACKEND 'django_redis.cache.RedisCache')"
        ) from exc
    return client
