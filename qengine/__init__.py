"""qengine: a task queue, scheduler and worker cluster for Python.

The public API; names not in ``__all__`` are internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light modules every process needs (a worker unpickles TaskMessage): loaded now.
from . import signals
from .config import Config, load_config
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

# The API, brokers and chains pull in SQLAlchemy and the broker clients. A worker
# process imports the engine only to run tasks and must not pay for them (in memory
# and start-up time), so these load on first use.
_LAZY = {
    "api": ("async_task", "async_tasks", "count_group", "delete_cached", "delete_group", "fetch",
            "fetch_group", "queue_size", "resubmit", "result", "result_group"),
    "brokers": ("Broker",),
    "chains": ("AsyncTask", "Chain", "Iter", "async_chain", "async_iter"),
    "cluster.cluster": ("Cluster",),
    "schedules": ("Schedule", "schedule"),
    # Task's queries read the current store, which the runtime locates.
    "runtime": ("Failure", "Success", "Task", "configure", "get_broker", "get_config"),
    "status": ("Stat",),
}  # fmt: skip
_HOME = {name: module for module, names in _LAZY.items() for name in names}

if TYPE_CHECKING:
    from .api import (
        async_task,
        async_tasks,
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
    from .brokers import Broker
    from .chains import AsyncTask, Chain, Iter, async_chain, async_iter
    from .cluster.cluster import Cluster
    from .runtime import Failure, Success, Task, configure, get_broker, get_config
    from .schedules import Schedule, schedule
    from .status import Stat


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    else:
        # ``import qengine`` then ``qengine.status.Stat``: submodules load on first use too.
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "AsyncTask",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Chain",
    "Cluster",
    "Config",
    "ConfigError",
    "Failure",
    "Iter",
    "PackageTooLarge",
    "QEngineError",
    "Schedule",
    "ScheduleError",
    "SignatureError",
    "Stat",
    "StoreError",
    "Success",
    "Task",
    "TaskTimeout",
    "async_chain",
    "async_iter",
    "async_task",
    "async_tasks",
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
    "schedule",
    "signals",
]
