"""An app (only in ``cluster_settings``) whose receivers report the cluster's signals.

Connected when Django populates its apps, so in the cluster's process
(``pre_enqueue``, ``post_execute``) and in every worker (``pre_execute``):
each leaves the arguments it got in the spool for the test to read.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from django.dispatch import receiver

from qdjango.signals import post_execute, pre_enqueue, pre_execute


def _leave(signal: str, sender: Any, task: Any, **extra: Any) -> None:
    spool = os.environ.get("QDJANGO_TEST_SPOOL")
    if not spool:
        return
    data = {"signal": signal, "sender": sender, "id": task["id"], "name": task["name"],
            "pid": os.getpid(), **extra}  # fmt: skip
    path = Path(spool) / f"signal-{uuid.uuid4().hex}.json"
    aside = path.with_suffix(".tmp")  # renamed whole: a reader never sees half a file
    aside.write_text(json.dumps(data, default=repr))
    aside.rename(path)


@receiver(pre_enqueue)
def on_pre_enqueue(sender: Any, task: Any, **kwargs: Any) -> None:
    _leave("pre_enqueue", sender, task)


@receiver(pre_execute)
def on_pre_execute(sender: Any, func: Any, task: Any, **kwargs: Any) -> None:
    _leave("pre_execute", sender, task, func=getattr(func, "__qualname__", repr(func)))


@receiver(post_execute)
def on_post_execute(sender: Any, task: Any, **kwargs: Any) -> None:
    _leave("post_execute", sender, task, success=task["success"], result=task["result"])
