"""``manage.py check`` reports what would break a cluster before it runs."""

from __future__ import annotations

from django.test import override_settings

from qdjango.checks import check_settings


def _ids() -> set[str]:
    return {message.id for message in check_settings()}


def test_the_test_settings_pass() -> None:
    assert _ids() == set()


def test_a_missing_secret_key_is_an_error() -> None:
    with override_settings(SECRET_KEY=""):
        assert "qdjango.E001" in _ids()


def test_cached_results_in_a_local_memory_cache_are_a_warning(settings) -> None:
    with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "cached": True}):
        assert "qdjango.W002" in _ids()
    shared = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "qdjango_cache"}}  # fmt: skip
    with override_settings(CACHES=shared, Q_CLUSTER={**settings.Q_CLUSTER, "cached": True}):
        assert "qdjango.W002" not in _ids()


def test_a_bad_setting_is_an_error_naming_the_key(settings) -> None:
    with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "workers": 0}):
        messages = check_settings()
    assert [m.id for m in messages] == ["qdjango.E002"]
    assert "workers" in messages[0].msg
