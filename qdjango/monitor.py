"""django_q's ``monitor`` module: cluster status (``Stat``) and the ``qinfo`` summary in code.

The status snapshots are the engine's (``qengine.status``): JSON in Redis
with a Redis broker, else rows of ``q_stat`` in the store, so a monitor
needs no cache framework. This module keeps the spec's signatures, which
take a broker where the engine takes a configuration.
"""

from __future__ import annotations

import sys
from typing import TextIO

from qengine.brokers import Broker
from qengine.config import Config
from qengine.health import health
from qengine.status import Stat as EngineStat
from qengine.status import Summary, summary

__all__ = ["Stat", "Summary", "health", "info"]


def _config(source: Broker | Config | None) -> Config | None:
    """The configuration a broker was made for (whose clusters to look at)."""
    if source is None or isinstance(source, Config):
        return source
    return source.config


class Stat(EngineStat):
    """A cluster's status; ``get``/``get_all`` take the spec's optional broker.

    The snapshots they return are the engine's ``Stat`` objects, with every
    field and method the spec lists (``status``, ``workers``, ``uptime()``…).
    """

    __slots__ = ()

    @classmethod
    def get(  # type: ignore[override]
        cls, cluster_id: str | int, broker: Broker | Config | None = None
    ) -> EngineStat | None:
        """The live cluster with this id (its pid, or pid.n for a second one in a process)."""
        return super().get(str(cluster_id), _config(broker))

    @classmethod
    def get_all(cls, broker: Broker | Config | None = None) -> list[EngineStat]:  # type: ignore[override]
        """Every live cluster with the configuration's name; the broker's when one is given."""
        return super().get_all(_config(broker))


def info(broker: Broker | None = None, *, file: TextIO | None = None) -> Summary:
    """Print the ``qinfo`` summary, as django_q's ``info()``, and return it for code to read.

    Counts come from the clusters' snapshots and the result store, so they
    are only as complete as ``save_limit`` lets the store be.
    """
    result = summary(_config(broker))
    print("\n".join(result.lines()), file=file or sys.stdout)
    return result
