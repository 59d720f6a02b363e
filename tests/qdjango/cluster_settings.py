"""Settings of the clusters the qdjango tests start: the test settings, plus ways to look in.

The cluster shares the test database (orm broker) and, through the engine's
``store`` cache (table ``q_cache``), the cached results; mails go to files
and signal receivers (``tests.qdjango.receivers``) leave what they got in
``QDJANGO_TEST_SPOOL``. With ``QDJANGO_TEST_DJANGO_REDIS`` set (a Redis
URL) the broker is Redis through a django-redis cache's pool instead.
"""

from __future__ import annotations

import os

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS, Q_CLUSTER

SPOOL = os.environ.get("QDJANGO_TEST_SPOOL", "")

INSTALLED_APPS = [*INSTALLED_APPS, "tests.qdjango.receivers"]
Q_CLUSTER = {**Q_CLUSTER, "cache": "store"}

EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.path.join(SPOOL, "mail")
ADMINS = [("Admin", "admin@example.com")]


def django_redis_settings(url: str, prefix: str) -> dict[str, object]:
    """CACHES and Q_CLUSTER for a cluster whose broker uses the django-redis cache's pool."""
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    keys = {k: v for k, v in Q_CLUSTER.items() if k not in {"orm", "cache"}}
    return {"CACHES": caches, "Q_CLUSTER": {**keys, "name": prefix, "django_redis": "default"}}


_redis = os.environ.get("QDJANGO_TEST_DJANGO_REDIS")
if _redis:
    _overrides = django_redis_settings(_redis, os.environ["QDJANGO_TEST_DJANGO_REDIS_PREFIX"])
    CACHES = _overrides["CACHES"]
    Q_CLUSTER = _overrides["Q_CLUSTER"]
