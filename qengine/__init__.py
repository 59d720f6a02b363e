"""qengine: a task queue, scheduler and worker cluster for Python.

The public API; names not in ``__all__`` are internal.
"""

from __future__ import annotations

from . import signals
from .api import (
    async_task,
    count_group,
    delete_cached,
    delete_group,
    fetch,
    fetch_group,
    queue_size,
    resubmit,
    result,
    result_group,
)
from .brokers import Broker, get_broker
from .chains import AsyncTask, Chain, Iter, async_chain, async_iter
from .config import Config, configure, get_config, load_config
from .errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    PackageTooLarge,
    QEngineError,
    ScheduleError,
    SignatureError,
    StoreError,
    TaskTimeout,
)
from .task import Failure, Success, Task

__version__ = "0.1.0"

__all__ = [
    "AsyncTask",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Chain",
    "Config",
    "ConfigError",
    "Failure",
    "Iter",
    "PackageTooLarge",
    "QEngineError",
    "ScheduleError",
    "SignatureError",
    "StoreError",
    "Success",
    "Task",
    "TaskTimeout",
    "async_chain",
    "async_iter",
    "async_task",
    "configure",
    "count_group",
    "delete_cached",
    "delete_group",
    "fetch",
    "fetch_group",
    "get_broker",
    "get_config",
    "load_config",
    "queue_size",
    "resubmit",
    "result",
    "result_group",
    "signals",
]
