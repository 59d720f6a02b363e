"""qengine: a task queue, scheduler and worker cluster for Python.

The public API; names not in ``__all__`` are internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Where each public name lives. Imported on first use, not here: a worker
# process imports the engine only to run tasks, and must not pay (in memory
# and start-up time) for the broker clients and SQLAlchemy it never uses.
_EXPORTS = {
    "signals": None,
    "async_task": "api", "count_group": "api", "delete_cached": "api", "delete_group": "api",
    "fetch": "api", "fetch_group": "api", "queue_size": "api", "resubmit": "api",
    "result": "api", "result_group": "api",
    "Broker": "brokers", "get_broker": "brokers",
    "AsyncTask": "chains", "Chain": "chains", "Iter": "chains", "async_chain": "chains",
    "async_iter": "chains",
    "Config": "config", "configure": "config", "get_config": "config", "load_config": "config",
    "BrokerError": "errors", "BrokerUnavailable": "errors", "ConfigError": "errors",
    "PackageTooLarge": "errors", "QEngineError": "errors", "ScheduleError": "errors",
    "SignatureError": "errors", "StoreError": "errors", "TaskTimeout": "errors",
    "Failure": "task", "Success": "task", "Task": "task",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = _EXPORTS[name]
        if module is None:  # a submodule exported as such
            value: Any = importlib.import_module(f"{__name__}.{name}")
        else:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
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
