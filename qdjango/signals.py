"""Django signals ``pre_enqueue``, ``pre_execute`` and ``post_execute`` (the spec's).

The engine sends its own (framework-free) signals; this module forwards
each to a Django signal, so receivers written for django_q work unchanged:
``pre_enqueue(sender, task)``, ``pre_execute(sender, func, task)``,
``post_execute(sender, task)`` with ``sender`` the string ``"qdjango"``.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from qengine import signals as engine

__all__ = ["post_execute", "pre_enqueue", "pre_execute"]

SENDER = "qdjango"

pre_enqueue = Signal()
"""Before a task is packed and enqueued; ``task`` is the task message."""
pre_execute = Signal()
"""In the worker, before the function runs; gets ``func`` and ``task``."""
post_execute = Signal()
"""After a finished task was saved; ``task`` is the finished task."""


def _forward(signal: Signal) -> Any:
    def receiver(_sender: Any, **kwargs: Any) -> None:
        signal.send(sender=SENDER, **kwargs)

    return receiver


# Strong references: the engine's signals hold receivers weakly.
_receivers = [
    (engine.pre_enqueue, _forward(pre_enqueue)),
    (engine.pre_execute, _forward(pre_execute)),
    (engine.post_execute, _forward(post_execute)),
]
for _signal, _receiver in _receivers:
    _signal.connect(_receiver, weak=False)
