"""Which Django database holds qdjango's tables: ``Q_CLUSTER['store']``, else the routers."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from qdjango.conf import store_alias
from qdjango.models import Task
from qengine.errors import ConfigError

_asked: list[Any] = []


class ElsewhereRouter:
    """Sends qdjango's writes to an alias of its own, and records what it was asked about."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        _asked.append(model)
        return "elsewhere" if model._meta.app_label == "qdjango" else None


ROUTERS = [f"{__name__}.ElsewhereRouter"]


def test_without_a_store_the_routers_choose_for_the_task_model(settings) -> None:
    _asked.clear()
    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "store"}
    with override_settings(DATABASE_ROUTERS=ROUTERS):
        assert store_alias() == "elsewhere"
    assert _asked == [Task]
    assert store_alias() == "default"


def test_a_store_alias_wins_over_the_routers(settings) -> None:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "store": "default"}
    with override_settings(DATABASE_ROUTERS=ROUTERS):
        assert store_alias() == "default"
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "store": "nowhere"}
    with pytest.raises(ConfigError, match="not an alias of DATABASES"):
        store_alias()
