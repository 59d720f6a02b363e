"""Celery's app and tasks: ``celery -A tasks_celery worker`` (cwd and PYTHONPATH bench/peers).

Redis broker and Redis result backend, each in its own database, so the
results are counted with DBSIZE of the backend's.
"""

from __future__ import annotations

import os

import workload
from celery import Celery

app = Celery("tasks_celery", broker=os.environ["PEERS_BROKER_URL"],
             backend=os.environ["PEERS_RESULT_URL"])  # fmt: skip
# Celery 5.x warns at every start unless this is set; True is what it does anyway.
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop() -> int:
    return workload.noop()


@app.task
def realistic(data: str) -> str:
    return workload.realistic(data)
