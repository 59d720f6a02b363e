"""Engine signals, shaped like Django's: ``signal.connect(receiver)``, ``receiver(sender, **kw)``.

``pre_enqueue`` gets ``task`` (the task message) before it is packed;
``pre_execute`` gets ``task`` and ``func`` (the resolved callable) in the
process that runs the task; ``post_execute`` gets ``task`` (the finished
``Task``) in the process that saved it. Receivers connect weakly by default,
as in Django: keep a reference to a receiver defined inside a function.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["SENDER", "post_execute", "pre_enqueue", "pre_execute"]

SENDER = "qengine"

_signals = Namespace()

pre_enqueue = _signals.signal("pre_enqueue", doc="Before a task is packed and enqueued.")
pre_execute = _signals.signal("pre_execute", doc="Before a task's function is called.")
post_execute = _signals.signal("post_execute", doc="After a finished task was saved.")
