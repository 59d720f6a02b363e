"""``Q_CLUSTER['cache']`` is checked when the configuration is made: an alias of the
project's ``CACHES``, 'store', 'memory' or a redis:// URL; anything else fails at once."""

from __future__ import annotations

import pytest

from qengine.errors import ConfigError
from qengine.runtime import get_config


def test_a_django_cache_alias_is_accepted(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "cache": "default"}
    assert get_config().cache == "default"


def test_an_unknown_cache_fails_when_the_configuration_is_made(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "cache": "defualt"}
    with pytest.raises(ConfigError, match=r"'cache' has the invalid value 'defualt'.*Django"):
        get_config()


def test_without_a_cache_key_the_default_cache_unless_the_environment_names_one(
    settings, monkeypatch
) -> None:
    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "cache"}
    assert get_config().cache == "default"
    monkeypatch.setenv("QENGINE_CACHE", "store")
    settings.Q_CLUSTER = {**settings.Q_CLUSTER}  # read again, with the variable set
    assert get_config().cache == "store"
