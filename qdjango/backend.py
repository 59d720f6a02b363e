"""A backend for Django's tasks framework that queues ``@task`` functions on the qengine cluster.

``TASKS = {"default": {"BACKEND": "qdjango.backend.QEngineBackend"}}`` makes
``my_task.enqueue(...)`` call ``qengine.api.async_task`` with the task's
dotted path (``task.module_path``), so the task travels, runs and is stored
like any other qengine task; the ``TaskResult`` id is the engine's task id.

Where a result's status comes from:

- SUCCESSFUL / FAILED: the result store (``qengine.api.fetch``), once the
  cluster saved the task.
- READY / RUNNING: only the ``orm`` broker lets qdjango look into the queue.
  A package in ``q_queue`` whose lease has not run out is RUNNING: a cluster
  holds it, which may mean it still waits in that cluster's memory for a free
  worker. One never delivered, or whose lease ran out (its cluster died), is
  READY. The other brokers cannot be searched for one task, so there a task
  without a stored result cannot be told from an unknown id: ``get_result``
  raises ``TaskResultDoesNotExist`` until the task finished.

Works with Django 6's ``django.tasks`` and, on Django 5.2, with the
``django-tasks`` backport (``django_tasks``), which has the same API.
"""

from __future__ import annotations

import builtins
import re
from contextvars import ContextVar
from inspect import iscoroutinefunction
from traceback import format_exception
from typing import Any, ClassVar

import django
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from qengine import api as engine_api
from qengine import errors as engine_errors
from qengine.brokers import broker_class
from qengine.config import Config
from qengine.errors import SignatureError
from qengine.runtime import get_config, get_signer
from qengine.signals import pre_execute
from qengine.task import Task as StoredTask
from qengine.task import TaskMessage

if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"qdjango.backend.QEngineBackend needs Django 6's django.tasks or, on Django "
            f"{django.get_version()}, the django-tasks backport: pip install django-tasks "
            f"({exc})"
        ) from exc

__all__ = ["ENGINE_OPTIONS", "QEngineBackend", "QEngineTask"]

ENGINE_OPTIONS = frozenset({"hook", "group", "timeout", "ack_failure", "sync"})
"""``async_task`` options a backend's ``OPTIONS`` may set for every task it queues.

``save`` and ``cached`` are the backend's own: results must land in the store,
where ``get_result`` reads them.
"""

_TRACEBACK = "Traceback (most recent call last):"

_running: ContextVar[TaskMessage | None] = ContextVar("qdjango_backend_running", default=None)
"""The message of the task this worker is about to run, from ``pre_execute``."""


def _note_running(sender: object, *, task: TaskMessage, **_: Any) -> None:
    # A task object learns its engine id (for TaskContext and the signals) from here:
    # pre_execute fires in the process and thread that call the function, just before.
    _running.set(task)


pre_execute.connect(_note_running)


class QEngineTask(Task):
    """The ``Task`` this backend's ``@task`` makes: one a qengine worker can call.

    The engine runs what ``task.module_path`` names, and in the task's module
    that name is the ``Task`` object ``@task`` put in place of the function.
    Calling it runs the function the way Django's own backends do: arguments
    and return value as JSON, a ``TaskContext`` if the task takes one, and the
    ``task_started`` / ``task_finished`` signals in the worker.
    """

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = _running.get()
        _running.set(None)  # consumed: a nested direct call must not pass for the worker's
        if message is None or message.func != self.module_path:
            if self.takes_context:
                raise TypeError(
                    f"{self.module_path} takes a context, which only a qengine worker "
                    "gives it; queue it with .enqueue() or run it with .call(context, …)"
                )
            return self.call(*args, **kwargs)
        return _run(self, message, args, kwargs)


def _run(task: QEngineTask, message: TaskMessage, args: tuple[Any, ...], kwargs: Any) -> Any:
    now = timezone.now()
    result = TaskResult(
        task=task, id=message.id, status=TaskResultStatus.RUNNING,
        enqueued_at=message.enqueued, started_at=now, last_attempted_at=now, finished_at=None,
        args=list(args), kwargs=dict(kwargs), backend=task.backend, errors=[],
        worker_ids=_workers(message.cluster, message.attempt_count),
    )  # fmt: skip
    task_started.send(QEngineBackend, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        # Django's backends keep only what JSON can carry; a value it cannot is a failure.
        value = normalize_json(value)
    except BaseException as exc:  # TaskTimeout too: finished, then the engine records it
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "finished_at", timezone.now())
        result.errors.append(
            TaskError(
                exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback="".join(format_exception(exc)),
            )
        )
        task_finished.send(QEngineBackend, task_result=result)
        raise
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    task_finished.send(QEngineBackend, task_result=result)
    return value


def _workers(cluster: str | None, attempts: int) -> list[str]:
    """``worker_ids`` as far as the engine knows them: the cluster name, once per delivery.

    The store records how often a task was delivered and to which cluster
    name, not which worker ran it; ``TaskResult.attempts`` counts this list.
    """
    return [cluster or ""] * attempts


class QEngineBackend(BaseTaskBackend):
    """Queues tasks with ``qengine.api.async_task`` and reads their results from the store.

    Status: SUCCESSFUL and FAILED come from the result store; READY and
    RUNNING from the ``orm`` broker's table, where a package whose lease has
    not run out is RUNNING (a cluster holds it: running, or waiting in the
    cluster for a worker) and any other is READY. Other brokers cannot be
    searched for one task: there an unfinished task raises
    ``TaskResultDoesNotExist``, like an unknown id.

    ``started_at`` and ``last_attempted_at`` of a stored result are None: the
    store keeps when a task was queued (``enqueued_at``) and finished, not
    when its last run began.

    ``OPTIONS`` may hold ``async_task`` options for every task (see
    ``ENGINE_OPTIONS``), e.g. ``{"timeout": 60, "group": "mails"}``. Every
    queue in ``QUEUES`` goes to the one queue of the cluster named by
    ``Q_CLUSTER['name']``: the names are checked, not routed.
    """

    task_class = QEngineTask

    supports_defer: ClassVar[bool] = False
    """No: the engine has no delayed delivery yet."""
    supports_priority: ClassVar[bool] = False
    """No: the engine delivers in the order tasks were queued."""
    supports_async_task: ClassVar[bool] = False
    """No: workers call plain functions in their own processes, with no event loop."""
    supports_get_result: ClassVar[bool] = True
    """Yes, from any process: finished tasks from the store (see the class docstring)."""

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - ENGINE_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(ENGINE_OPTIONS))} (save and cached are the "
                "backend's own: results must go to the store, where get_result reads them)"
            )

    def validate_task(self, task: Task) -> None:
        """Refuse what the engine cannot do yet, saying why, then Django's own checks."""
        where = f"task {task.module_path} (TASKS[{self.alias!r}])"
        if not self.supports_async_task and iscoroutinefunction(task.func):
            raise InvalidTask(
                f"{where}: async def tasks are not supported yet; qengine's workers call "
                "plain functions in their own processes"
            )
        if not self.supports_priority and task.priority != DEFAULT_TASK_PRIORITY:
            raise InvalidTask(
                f"{where}: priority={task.priority} is not supported yet; qengine delivers "
                "tasks in the order they were queued"
            )
        if not self.supports_defer and task.run_after is not None:
            raise InvalidTask(
                f"{where}: run_after is not supported yet, qengine has no delayed delivery; "
                "qdjango.tasks.schedule(task.module_path, …, next_run=…) runs it once later"
            )
        super().validate_task(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Queue the task on the cluster (or, in sync mode, run it now) and return its result.

        Raises:
            InvalidTask: the task cannot run here (see ``validate_task``), or the
                name ``task.module_path`` is not this task.
            TypeError: an argument is not JSON data (checked before anything is queued),
                or a keyword is named ``task_name``, which the engine keeps for itself.
        """
        self.validate_task(task)
        self._check_reachable(task)
        # Normalised first, as Django's backends do: the worker gets what a result shows.
        args = normalize_json(list(args))
        kwargs = normalize_json(dict(kwargs))
        if "task_name" in kwargs:
            # async_task always takes this keyword for itself: the function would not get it.
            raise TypeError(
                f"task {task.module_path}: a keyword argument named 'task_name' cannot reach "
                "the function, qengine takes it as the task's name"
            )
        # Decided here and passed on, so the engine does not decide it a second time.
        sync = self.options.get("sync", get_config().sync)
        # Every option key present (None: the engine's default), so that a keyword the task
        # takes named like one (group, hook, timeout…) goes to the function, not the engine.
        q_options: dict[str, Any] = dict.fromkeys(engine_api.OPTION_KEYS)
        q_options.update(self.options, sync=sync, save=True, cached=False)
        task_id = engine_api.async_task(task.module_path, *args, q_options=q_options, **kwargs)
        stored = self._stored(task_id) if sync else None
        if stored is not None:
            result = self._finished(stored)
        else:
            result = TaskResult(
                task=task, id=task_id, status=TaskResultStatus.READY,
                enqueued_at=timezone.now(), started_at=None, last_attempted_at=None,
                finished_at=None, args=args, kwargs=kwargs, backend=self.alias, errors=[],
                worker_ids=[],
            )  # fmt: skip
        task_enqueued.send(type(self), task_result=result)
        return result

    def _check_reachable(self, task: Task) -> None:
        """The worker imports ``task.module_path`` and calls it: that name must be this task.

        It is when ``@task`` decorated a module-level function under this
        backend; a ``Task`` made by another backend's ``@task`` is not callable.
        """
        try:
            target = import_string(task.module_path)
        except ImportError as exc:
            raise InvalidTask(
                f"task {task.module_path} cannot be imported by that name ({exc}); "
                "a cluster's worker finds the task by it"
            ) from exc
        if not isinstance(target, QEngineTask) or target.func is not task.func:
            raise InvalidTask(
                f"{task.module_path} is not a task of {type(self).__name__}: a cluster's "
                "worker imports that name and calls it, so decorate the module-level "
                f"function with @task while TASKS[{task.backend!r}] is this backend"
            )

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result by its engine id, from the store or else the ``orm`` queue.

        Raises:
            TaskResultDoesNotExist: no such task; or it has not finished and the
                broker is not ``orm``; or the id is of a task not queued
                through ``django.tasks``.
        """
        stored = self._stored(result_id)
        if stored is None:
            queued = self._find_queued(result_id)
            if queued is not None:
                message, is_leased, deliveries = queued
                status = TaskResultStatus.RUNNING if is_leased else TaskResultStatus.READY
                return TaskResult(
                    task=self._task(message.func, result_id), id=message.id, status=status,
                    enqueued_at=message.enqueued, started_at=None, last_attempted_at=None,
                    finished_at=None, args=list(message.args), kwargs=dict(message.kwargs),
                    backend=self.alias, errors=[],
                    worker_ids=_workers(message.cluster, deliveries),
                )  # fmt: skip
            # It may have finished while the queue was read: a cluster saves the result
            # before it removes the package, so it is in one place or the other.
            stored = self._stored(result_id)
        if stored is not None:
            return self._finished(stored)
        config = get_config()
        if _orm_queue(config):
            raise TaskResultDoesNotExist(f"no task {result_id!r} is queued or stored")
        broker = broker_class(config).product or "configured"
        raise TaskResultDoesNotExist(
            f"no task {result_id!r} is stored; with the {broker} broker qdjango "
            "cannot look into the queue, so a task not finished yet cannot be told from an "
            "unknown id (the orm broker can: docs/django-tasks.md)"
        )

    @staticmethod
    def _stored(result_id: str) -> StoredTask | None:
        stored = engine_api.fetch(result_id, cached=False)
        # fetch also answers to a task's name; a result id is only ever an id.
        return stored if stored is not None and stored.id == result_id else None

    def _find_queued(self, result_id: str) -> tuple[TaskMessage, bool, int] | None:
        """The task's message in the ``orm`` broker's queue, whether it is leased, deliveries."""
        config = get_config()
        if not _orm_queue(config):
            return None
        from .models import OrmQ  # models load with the app registry, after this module

        signer = get_signer(config)
        # Unpickling every package is what costs; an uncompressed pickle holds the id's
        # text as it is, so only packages containing it are opened.
        needle = None if config.compress else result_id.encode()
        rows = OrmQ.objects.using(config.orm).filter(key=config.name)
        for row in rows.only("payload", "lock", "deliveries").iterator():
            payload = bytes(row.payload)
            if needle is not None and needle not in payload:
                continue
            try:
                message: TaskMessage = signer.loads(payload)
            except SignatureError:  # not ours to judge: the cluster discards it
                continue
            if message.id == result_id:
                is_leased = row.lock is not None and row.lock > timezone.now()
                return message, is_leased, row.deliveries
        return None

    def _finished(self, stored: StoredTask) -> TaskResult:
        success = stored.success
        result = TaskResult(
            task=self._task(stored.func, stored.id),
            id=stored.id,
            status=TaskResultStatus.SUCCESSFUL if success else TaskResultStatus.FAILED,
            enqueued_at=stored.started,  # the store's "started" is when the task was queued
            started_at=None,
            last_attempted_at=None,
            finished_at=stored.stopped,
            args=list(stored.args),
            kwargs=dict(stored.kwargs),
            backend=self.alias,
            errors=[] if success else [_task_error(str(stored.result))],
            worker_ids=_workers(stored.cluster, stored.attempt_count),
        )
        if success:
            object.__setattr__(result, "_return_value", stored.result)
        return result

    def _task(self, func: object, task_id: str) -> Task:
        """The ``Task`` an engine task runs, which only tasks queued by this framework have."""
        if not isinstance(func, str):
            raise TaskResultDoesNotExist(f"task {task_id!r} was not queued through django.tasks")
        try:
            target = import_string(func)
        except ImportError as exc:
            raise TaskResultDoesNotExist(
                f"task {task_id!r} runs {func}, which cannot be imported here ({exc})"
            ) from exc
        if not isinstance(target, Task):
            raise TaskResultDoesNotExist(
                f"task {task_id!r} runs {func}, which is not a django.tasks task"
            )
        return target if target.backend == self.alias else target.using(backend=self.alias)


def _task_error(text: str) -> TaskError:
    """A failed task's stored error text as Django's ``TaskError``.

    A worker stores ``"Name: message"``, a blank line and the traceback. The
    traceback's last line for the exception names its class with the module
    (Python leaves out ``builtins``), so the class path is read from there.
    Failures the cluster wrote itself carry no exception (a worker died,
    attempts ran out): their class is ``qengine.errors.QEngineError``.
    """
    name = text.partition(":")[0].strip()
    start = text.find(_TRACEBACK)
    trace = text[start:] if start >= 0 else ""
    return TaskError(exception_class_path=_class_path(name, trace), traceback=trace or text)


def _class_path(name: str, trace: str) -> str:
    if not name.isidentifier():
        return f"{engine_errors.__name__}.{engine_errors.QEngineError.__name__}"
    pattern = rf"^((?:\w+\.)*){re.escape(name)}(?=:|$)"
    prefixes = re.findall(pattern, trace, flags=re.MULTILINE)
    if prefixes and prefixes[-1]:
        return f"{prefixes[-1]}{name}"
    for module in (builtins, engine_errors):
        found = getattr(module, name, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return f"{module.__name__}.{name}"
    return name


def _orm_queue(config: Config) -> bool:
    """Whether the queue is the orm broker's table in a Django database, where a task not
    finished yet can be found by id (other brokers cannot be searched)."""
    return bool(config.orm) and broker_class(config).keeps_queue_in_sql
