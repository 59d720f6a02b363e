"""``manage.py check`` reports what would break a cluster before it runs."""

from __future__ import annotations

import pytest
from django.db import connections
from django.db.backends.dummy.base import DatabaseWrapper as DummyWrapper
from django.test import override_settings

from qdjango.checks import check_settings
from qdjango.db import _driver, vendor_problem
from qengine.errors import ConfigError


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


def test_sqlite_without_wal_and_a_busy_timeout_is_a_warning_for_a_cluster(settings) -> None:
    if connections["default"].vendor != "sqlite":
        pytest.skip("a SQLite check")
    db = connections["default"].settings_dict
    kept = db["OPTIONS"]
    db["OPTIONS"] = {}  # as startproject writes it
    try:
        messages = {m.id: m for m in check_settings()}
        assert "qdjango.W003" in messages
        assert "journal_mode=WAL" in messages["qdjango.W003"].hint
        with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True}):
            assert "qdjango.W003" not in _ids(), "sync mode runs no cluster"
    finally:
        db["OPTIONS"] = kept


def test_a_database_of_another_vendor_is_named_with_what_is_supported() -> None:
    other = DummyWrapper({**connections["default"].settings_dict}, alias="legacy")
    problem = vendor_problem(other)
    assert problem is not None
    assert "'legacy'" in problem
    assert "'unknown'" in problem
    assert "mysql, postgresql, sqlite" in problem
    assert vendor_problem(connections["default"]) is None
    with pytest.raises(ConfigError, match="'unknown' database"):
        _driver(other)
