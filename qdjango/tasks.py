"""django_q's task API for Django projects: the engine's, with results as model instances.

``from qdjango.tasks import async_task, result, fetch, schedule, …`` works
as ``django_q.tasks`` does. Enqueueing, waiting and the cache are the
engine's (``qengine.api``, ``qengine.chains``, ``qengine.schedules``); what
this module adds is the Django side of the answers: ``fetch`` gives a
``qdjango.models.Task``, ``fetch_group`` a ``QuerySet`` and ``schedule`` the
``qdjango.models.Schedule`` row, so callers can filter, annotate and save
them like any other model.

Values that are not tasks (``result``, ``result_group``, ``count_group``,
ids) come straight from the engine, which reads the same tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from qengine import api as engine_api
from qengine import chains as engine_chains
from qengine import schedules as engine_schedules
from qengine.api import (
    async_task,
    async_tasks,
    count_group,
    delete_cached,
    delete_group,
    queue_size,
    result,
    result_group,
)
from qengine.chains import async_chain, async_iter
from qengine.runtime import get_config
from qengine.task import GROUP_ORDER
from qengine.task import Task as EngineTask

from . import conf
from .models import Schedule, Task

__all__ = [
    "AsyncTask",
    "Chain",
    "Iter",
    "Schedule",
    "Task",
    "async_chain",
    "async_iter",
    "async_task",
    "async_tasks",
    "count_group",
    "delete_cached",
    "delete_group",
    "fetch",
    "fetch_group",
    "queue_size",
    "result",
    "result_group",
    "schedule",
]


def _tasks() -> QuerySet[Task]:
    return Task.objects.using(conf.store_alias())


def _is_cached(cached: bool | int | None) -> bool:
    return bool(get_config().cached) if cached is None else bool(cached)


def unsaved_task(task: EngineTask) -> Task:
    """A model instance of a task the engine read from the cache, not yet in the database.

    The spec's way to keep a cached result is ``fetch(id, cached=True).save()``;
    an unsaved instance makes ``save()`` insert the row, into the store's
    database (Django's default router writes where ``_state.db`` points).
    """
    model = Task(
        id=task.id, name=task.name, func=task.func, hook=task.hook, args=task.args,
        kwargs=task.kwargs, result=task.result, group=task.group, started=task.started,
        stopped=task.stopped, success=task.success, attempt_count=task.attempt_count,
        cluster=task.cluster,
    )  # fmt: skip
    model._state.db = conf.store_alias()
    return model


def fetch(task_id: str, wait: int = 0, cached: bool | None = None) -> Task | None:
    """The finished task by id or name as a model instance, waiting up to ``wait`` ms.

    ``wait`` -1 waits indefinitely. The engine does the waiting (woken by
    the cluster on Redis, polling otherwise); the row is then read through
    the ORM. With ``cached`` the task comes from the cache as an unsaved
    instance; ``save()`` stores it. ``cached`` None follows ``Q_CLUSTER['cached']``
    (django_q's ``Conf.CACHED``), as in every function here that takes it.
    """
    if _is_cached(cached):
        found = engine_api.fetch(task_id, wait=wait, cached=True)
        return None if found is None else unsaved_task(found)
    if wait:
        # Only for the engine's wait (notified or polled); the row is then read once, below.
        found = engine_api.fetch(task_id, wait=wait, cached=False)
        if found is None:
            return None
        task_id = found.id
    tasks = _tasks()
    return (
        tasks.filter(id=task_id).first() or tasks.filter(name=task_id).order_by("-stopped").first()
    )


def fetch_group(
    group_id: str,
    failures: bool = True,
    wait: int = 0,
    count: int | None = None,
    cached: bool | None = None,
) -> QuerySet[Task] | list[Task]:
    """The group's tasks as a QuerySet in enqueue order (a list of unsaved tasks with ``cached``).

    ``count`` blocks until the group has that many tasks, at most ``wait``
    ms (0 with a count: no limit, as in the spec; -1: indefinitely).
    Without ``failures`` only the successes.
    """
    if _is_cached(cached):
        tasks = engine_api.fetch_group(group_id, failures, wait, count, cached=True)
        return [unsaved_task(task) for task in tasks]
    if wait or count:
        # The engine's wait, so both APIs block alike; its answer is dropped for the queryset.
        engine_api.fetch_group(group_id, failures, wait, count, cached=False)
    tasks_qs = _tasks().filter(group=group_id)
    if not failures:
        tasks_qs = tasks_qs.filter(success=True)
    return tasks_qs.order_by(*GROUP_ORDER)


def schedule(
    func: str,
    *args: Any,
    name: str | None = None,
    hook: str | None = None,
    schedule_type: str = Schedule.ONCE,
    minutes: int | None = None,
    cron: str | None = None,
    repeats: int = -1,
    next_run: datetime | None = None,
    cluster: str | None = None,
    q_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Schedule:
    """Create a schedule of ``func(*args, **kwargs)`` and return its model instance.

    The engine validates and stores it (see ``qengine.schedules.schedule``
    for every argument); a cron schedule without ``next_run`` starts at its
    first slot, any other one now.

    Raises:
        ScheduleError: an invalid value or a taken name; nothing is stored then.
    """
    item = engine_schedules.schedule(
        func, *args, name=name, hook=hook, schedule_type=schedule_type, minutes=minutes,
        cron=cron, repeats=repeats, next_run=next_run, cluster=cluster, q_options=q_options,
        **kwargs,
    )  # fmt: skip
    return Schedule.objects.using(conf.store_alias()).get(pk=item.id)


class AsyncTask(engine_chains.AsyncTask):
    """One task kept in an object (the engine's ``AsyncTask``) whose tasks are model instances."""

    def fetch(self, wait: int = 0) -> Task | None:  # type: ignore[override]
        if self.started:
            return fetch(self.id, wait=wait, cached=self.cached)
        return None

    def fetch_group(
        self, failures: bool = True, wait: int = 0, count: int | None = None
    ) -> QuerySet[Task] | list[Task] | None:
        if self.started and self.group:
            return fetch_group(self.group, failures, wait, count, cached=self.cached)
        return None


class Iter(engine_chains.Iter):
    """An ``async_iter`` built up one call at a time; its collated task is a model instance."""

    def fetch(self, wait: int = 0) -> Task | None:  # type: ignore[override]
        if self.started:
            return fetch(self.id, wait=wait, cached=bool(self.cached))
        return None


class Chain(engine_chains.Chain):
    """Tasks run one after another as one group; ``fetch()`` gives them as model instances."""

    def fetch(  # type: ignore[override]
        self, failures: bool = True, wait: int = 0
    ) -> QuerySet[Task] | list[Task] | None:
        """The chain's tasks once every link finished, waiting up to ``wait`` ms."""
        if self.started:
            return fetch_group(
                self.group, failures=failures, wait=wait, count=self.length(),
                cached=bool(self.cached),
            )  # fmt: skip
        return None
