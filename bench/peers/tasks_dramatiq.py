"""Dramatiq's broker and actors: ``dramatiq tasks_dramatiq`` (cwd and PYTHONPATH bench/peers).

The Results middleware with its Redis backend stores each result; the backend
gets its own Redis database, so the results are counted with DBSIZE.
"""

from __future__ import annotations

import os

import dramatiq
import workload
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

broker = RedisBroker(url=os.environ["PEERS_BROKER_URL"])
backend = RedisBackend(url=os.environ["PEERS_RESULT_URL"])
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop() -> int:
    return workload.noop()


@dramatiq.actor(store_results=True)
def realistic(data: str) -> str:
    return workload.realistic(data)
