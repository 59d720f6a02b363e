"""Settings of a cluster running django.tasks tasks: the test settings with the qengine backend.

A worker imports ``tests.qdjango.tasks_backend`` by name, and ``@task`` there
must build tasks of ``QEngineBackend``, as in the tests that queue them.
"""

from __future__ import annotations

from .settings import *  # noqa: F403

TASKS = {"default": {"BACKEND": "qdjango.backend.QEngineBackend"}}
