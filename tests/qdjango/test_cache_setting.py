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
