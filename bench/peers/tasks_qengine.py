"""qengine's task functions: ``bench.peers.tasks_qengine.noop`` and ``.realistic``.

qengine's cluster imports tasks by dotted path, with the project root on its path.
"""

from __future__ import annotations

from bench.peers.workload import noop, realistic

__all__ = ["noop", "realistic"]
