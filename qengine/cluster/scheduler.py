"""The scheduler thread: due schedules → tasks, each slot once across clusters."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.thread = threading.Thread(target=self.run, name="qengine-scheduler", daemon=True)

    def run(self) -> None:
        self.cluster.stop_event.wait()
