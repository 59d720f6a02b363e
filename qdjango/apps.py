"""The app config: hooks the engine to Django settings, signals and cache when Django starts."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _

_WATCHED = {
    "Q_CLUSTER", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "DATABASES", "CACHES", "TIME_ZONE"
}  # fmt: skip


class QDjangoConfig(AppConfig):
    name = "qdjango"
    label = "qdjango"
    verbose_name = _("Django Q")
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from qengine import db, lifecycle, runtime

        from . import conf

        # Migrations own the tables in a Django project, and Django's connections reach them.
        db.set_create_tables(False)
        from . import db as django_db

        db.register_engine_factory(django_db.SCHEME, django_db.django_engine)
        runtime.on_reset(django_db.dispose)
        lifecycle.register_connection_hooks(
            between_batches=django_db.close_stale,
            at_thread_exit=django_db.close_thread_connections,
        )
        from .transactions import register as register_commit_hook

        register_commit_hook()
        runtime.set_loader(conf.load)
        from qengine.cache import register_cache_factory
        from qengine.config import register_cache_names

        from .cache import django_cache, is_cache_alias

        register_cache_factory(django_cache)
        register_cache_names(is_cache_alias)
        from qengine.redis_conn import register_client_provider

        from .brokers import django_redis_client

        register_client_provider(django_redis_client)
        setting_changed.connect(_reload, dispatch_uid="qdjango.reload")
        label = conf.q_cluster().get("label")
        if label:
            self.verbose_name = label
        from . import checks, signals  # noqa: F401  (registration on import)


def _reload(*, setting: str, **_: Any) -> None:
    if setting in _WATCHED:
        from qengine import runtime

        runtime.reset()
