"""``Cluster(...).run()`` in a process of its own, as an application's script would call it.

The helpers are then forked from the running cluster (``Cluster._start``),
after its signal handlers are in place, not from ``qcluster``'s early fork.
"""

from __future__ import annotations

import logging

from qengine.cluster.cluster import Cluster

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)  # the tests wait for "running." in the log
    raise SystemExit(Cluster().run())
