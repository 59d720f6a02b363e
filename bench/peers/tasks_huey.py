"""Huey's app and tasks: ``huey_consumer tasks_huey.huey`` (cwd and PYTHONPATH bench/peers).

RedisHuey keeps the queue and the results in the run's Redis database;
``PEERS_HUEY_NOTIFY=1`` turns on ``notify_result``, which lets a blocking
``Result.get`` wait on a Redis list instead of polling the result hash.
"""

from __future__ import annotations

import os

import workload
from huey import RedisHuey

huey = RedisHuey(
    os.environ["PEERS_NAME"],
    url=os.environ["PEERS_BROKER_URL"],
    notify_result=os.environ.get("PEERS_HUEY_NOTIFY") == "1",
)


@huey.task()
def noop() -> int:
    return workload.noop()


@huey.task()
def realistic(data: str) -> str:
    return workload.realistic(data)
