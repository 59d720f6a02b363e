"""The health check: are this configuration's clusters, and the servers they need, up and well.

A probe needs a yes or no plus something a person can read when it says no,
so ``health`` returns both: ``ok`` and a JSON-ready body listing every live
cluster and its state. ``qinfo --health`` prints that body for exec probes
(exit 0/1), and ``http_response`` turns it into a status code and a JSON text
for any web framework, so none of them is needed here. ``check_servers``
asks the servers themselves, for ``qcluster`` to refuse to start without them.
"""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import RedisError

from .config import Config
from .errors import BrokerUnavailable, QEngineError
from .runtime import get_config, new_broker
from .status import Stat
from .store import ResultStore

__all__ = ["HAPPY_STATES", "check_servers", "health", "http_response"]

HAPPY_STATES = ("Idle", "Working")
"""States of a cluster that takes work; Starting, Stopping and Stopped do not count as healthy."""


def _cluster(stat: Stat) -> dict[str, Any]:
    return {
        "cluster_id": stat.cluster_id,
        "host": stat.host,
        "pid": stat.pid,
        "status": stat.status,
        "is_happy": stat.status in HAPPY_STATES,
        "workers": len(stat.workers),
        "uptime_s": round(stat.uptime(), 1),
        "processed": stat.processed,
        "failed": stat.failed,
    }


def health(config: Config | None = None, *, host: str | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether the clusters of ``config``'s name are healthy, and why.

    Healthy means at least one cluster is alive and every live cluster is
    Idle or Working, as in the spec: no cluster at all is unhealthy, because
    then queued tasks wait for nobody. A cluster counts as alive while its
    status snapshot has not expired (a few seconds after it last published).

    A status source that cannot be read (Redis or the store down) is reported
    as unhealthy with an ``error`` in the body rather than raised, so a probe
    always gets an answer.

    Args:
        config: whose clusters (by name) and status source; default: the current one.
        host: only count the clusters on this host. A check of every cluster
            fails whenever any one of them is stopping, which suits a readiness
            check of the whole but would have a per-machine liveness probe
            restart healthy machines during a rolling update.

    Returns:
        ``(ok, body)``; body has ``ok``, ``name``, ``happy``, ``total``,
        ``clusters`` (one dict each) and ``reason`` or ``error``.
    """
    config = config or get_config()
    body: dict[str, Any] = {"ok": False, "name": config.name, "happy": 0, "total": 0}
    if host is not None:
        body["host"] = host
    try:
        stats = [s for s in Stat.get_all(config) if host is None or s.host == host]
    except (QEngineError, RedisError, OSError) as exc:  # the store's errors are StoreError
        body["clusters"] = []
        body["error"] = f"cannot read the clusters' status: {exc}"
        return False, body
    clusters = [_cluster(stat) for stat in stats]
    happy = sum(1 for c in clusters if c["is_happy"])
    ok = bool(clusters) and happy == len(clusters)
    body.update(ok=ok, happy=happy, total=len(clusters), clusters=clusters)
    if not clusters:
        where = f" on {host}" if host is not None else ""
        body["reason"] = f"no cluster named {config.name!r} is running{where}"
    else:
        body["reason"] = f"{happy} of {len(clusters)} cluster(s) are Idle or Working"
    return ok, body


def http_response(config: Config | None = None, *, host: str | None = None) -> tuple[int, str]:
    """The health check as an HTTP answer: 200 or 500 and the body as JSON text.

    500 rather than 503 because that is what the spec's example returns and
    what load balancers configured for it expect.
    """
    ok, body = health(config, host=host)
    return (200 if ok else 500), json.dumps(body)


def check_servers(config: Config | None = None) -> None:
    """Raise our error naming the first server of ``config`` that cannot be reached.

    The broker first, then the result store. A running cluster rides out an
    outage, retrying; one that starts without them would only log warnings,
    so ``qcluster`` asks here first and refuses to start with one clear line.

    Raises:
        BrokerUnavailable: the broker does not answer.
        BrokerError: it answered with an error.
        StoreError: the result store cannot be reached or refuses.
    """
    config = config or get_config()
    broker = new_broker(config)
    try:
        if not broker.ping():
            # ping says no but not why: a broker that reaches its server to describe it
            # raises its own error from info(), which names the server and the reason.
            described = broker.info()
            raise BrokerUnavailable(
                f"the broker ({described}) does not answer; check that its server is "
                "running and that 'broker' names it"
            )
    finally:
        broker.close()
    ResultStore(config).ping()
