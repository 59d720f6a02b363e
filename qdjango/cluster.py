"""django_q's ``Cluster`` for Django projects: the engine's cluster, workers set up with Django."""

from __future__ import annotations

from typing import Any

from qengine.cluster.cluster import Cluster as EngineCluster
from qengine.config import Config

from .worker import setup_django

__all__ = ["Cluster"]


class Cluster(EngineCluster):
    """A cluster configured from the Django settings whose workers call ``django.setup()``.

    ``Cluster(broker)`` as in the spec is accepted: a broker's configuration
    is used then.
    """

    def __init__(self, config: Config | Any = None, *, run_once: bool = False) -> None:
        if config is not None and not isinstance(config, Config):
            config = getattr(config, "config", None)
        super().__init__(config, run_once=run_once, worker_init=setup_django)
