"""Task functions the qdjango tests enqueue (importable by the cluster's workers)."""

from __future__ import annotations


def count_tasks() -> int:
    """Uses the ORM inside a worker: proves the worker called django.setup()."""
    from qdjango.models import Task

    return Task.objects.count()
