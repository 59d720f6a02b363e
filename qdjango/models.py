"""Django models over the engine's tables (``q_task``, ``q_schedule``, ``q_queue``…).

The engine reads and writes these tables through SQLAlchemy; these models
give Django users the same rows as model instances, querysets and admin
pages. ``tests/qdjango/test_tables.py`` keeps both descriptions in step.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from qengine import schedules as engine_schedules
from qengine.schedules import ScheduleType
from qengine.task import GROUP_ORDER

from .fields import PickledField

__all__ = ["CacheEntry", "Failure", "OrmQ", "Schedule", "StatEntry", "Success", "Task"]


class Task(models.Model):
    """A finished task (success or failure) as the cluster saved it."""

    id = models.CharField(verbose_name=_("ID"), max_length=32, primary_key=True, editable=False)
    name = models.CharField(verbose_name=_("name"), max_length=100, editable=False, db_index=True)
    func = models.CharField(verbose_name=_("function"), max_length=256, db_index=True)
    hook = models.CharField(verbose_name=_("hook"), max_length=256, null=True)
    args = PickledField(verbose_name=_("arguments"), null=True)
    kwargs = PickledField(verbose_name=_("keyword arguments"), null=True)
    result = PickledField(verbose_name=_("result"), null=True)
    group = models.CharField(
        verbose_name=_("group"), max_length=100, null=True, editable=False, db_index=True
    )
    started = models.DateTimeField(verbose_name=_("started"), editable=False)
    stopped = models.DateTimeField(verbose_name=_("stopped"), editable=False, db_index=True)
    success = models.BooleanField(
        verbose_name=_("success"), default=True, editable=False, db_index=True
    )
    attempt_count = models.IntegerField(verbose_name=_("attempts"), default=0)
    cluster = models.CharField(verbose_name=_("cluster"), max_length=100, null=True)

    class Meta:
        db_table = "q_task"
        app_label = "qdjango"
        ordering = ["-stopped"]
        verbose_name = _("Task")
        verbose_name_plural = _("Tasks")

    def __str__(self) -> str:
        return f"{self.name or self.id}"

    def time_taken(self) -> float:
        """Seconds from enqueueing to the end of the run."""
        return (self.stopped - self.started).total_seconds()

    @staticmethod
    def get_result(task_id: str) -> Any:
        """The result of a task by id or name (None when unknown)."""
        task = Task.get_task(task_id)
        return task.result if task else None

    @staticmethod
    def get_result_group(group_id: str, failures: bool = False) -> list[Any]:
        return [task.result for task in Task.get_task_group(group_id, failures)]

    def group_result(self, failures: bool = False) -> list[Any] | None:
        return self.get_result_group(self.group, failures) if self.group else None

    @staticmethod
    def get_group_count(group_id: str, failures: bool = False) -> int:
        tasks = Task.objects.filter(group=group_id)
        return tasks.filter(success=False).count() if failures else tasks.count()

    def group_count(self, failures: bool = False) -> int | None:
        return self.get_group_count(self.group, failures) if self.group else None

    @staticmethod
    def delete_group(group_id: str, objects: bool = False) -> Any:
        """Delete a group's tasks (``objects`` False just unlinks them from the group)."""
        group = Task.objects.filter(group=group_id)
        if objects:
            return group.delete()
        return group.update(group=None)

    def group_delete(self, tasks: bool = False) -> Any:
        return self.delete_group(self.group, tasks) if self.group else None

    @staticmethod
    def get_task(task_id: str) -> Task | None:
        """A task by id (32 hex characters) or else by name."""
        if len(task_id) == 32 and Task.objects.filter(id=task_id).exists():
            return Task.objects.get(id=task_id)
        return Task.objects.filter(name=task_id).order_by("-stopped").first()

    @staticmethod
    def get_task_group(group_id: str, failures: bool = True) -> models.QuerySet[Task]:
        """The group's tasks in enqueue order; without ``failures`` only the successes."""
        tasks = Task.objects.filter(group=group_id)
        if not failures:
            tasks = tasks.filter(success=True)
        return tasks.order_by(*GROUP_ORDER)


class SuccessManager(models.Manager["Success"]):
    def get_queryset(self) -> models.QuerySet[Success]:
        return super().get_queryset().filter(success=True)


class FailureManager(models.Manager["Failure"]):
    def get_queryset(self) -> models.QuerySet[Failure]:
        return super().get_queryset().filter(success=False)


class Success(Task):
    objects = SuccessManager()

    class Meta:
        app_label = "qdjango"
        proxy = True
        verbose_name = _("Successful task")
        verbose_name_plural = _("Successful tasks")
        ordering = ["-stopped"]


class Failure(Task):
    objects = FailureManager()

    class Meta:
        app_label = "qdjango"
        proxy = True
        verbose_name = _("Failed task")
        verbose_name_plural = _("Failed tasks")
        ordering = ["-stopped"]


class Schedule(models.Model):
    """A schedule the clusters' scheduler threads run (see ``qengine.schedules``)."""

    # The spec's names for the schedule types; the engine's ScheduleType declares them once.
    ONCE = ScheduleType.ONCE
    MINUTES = ScheduleType.MINUTES
    HOURLY = ScheduleType.HOURLY
    DAILY = ScheduleType.DAILY
    WEEKLY = ScheduleType.WEEKLY
    MONTHLY = ScheduleType.MONTHLY
    QUARTERLY = ScheduleType.QUARTERLY
    YEARLY = ScheduleType.YEARLY
    CRON = ScheduleType.CRON
    # The labels are translated when shown; their msgids stay in locale/*/django.po, which
    # makemessages cannot find in a variable (a test checks they are there).
    TYPE = tuple((kind.value, _(kind.label)) for kind in ScheduleType)

    name = models.CharField(
        verbose_name=_("name"), max_length=100, null=True, blank=True, unique=True
    )
    func = models.CharField(
        verbose_name=_("function"), max_length=256, help_text=_("e.g. module.tasks.function")
    )
    hook = models.CharField(
        verbose_name=_("hook"),
        max_length=256,
        null=True,
        blank=True,
        help_text=_("e.g. module.tasks.result_function"),
    )
    args = models.TextField(
        verbose_name=_("arguments"), null=True, blank=True, help_text=_("e.g. 1, 2, 'John'")
    )
    kwargs = models.TextField(
        verbose_name=_("keyword arguments"),
        null=True,
        blank=True,
        help_text=_("e.g. x=1, y=2, name='John'"),
    )
    schedule_type = models.CharField(
        max_length=1, choices=TYPE, default=ONCE.value, verbose_name=_("Schedule Type")
    )
    minutes = models.IntegerField(
        verbose_name=_("minutes"),
        null=True,
        blank=True,
        help_text=_("Number of minutes for the Minutes type"),
    )
    cron = models.CharField(
        verbose_name=_("cron"),
        max_length=100,
        null=True,
        blank=True,
        help_text=_("Cron expression"),
    )
    repeats = models.IntegerField(default=-1, verbose_name=_("Repeats"),
                                  help_text=_("n = n times, -1 = forever"))  # fmt: skip
    next_run = models.DateTimeField(
        verbose_name=_("Next Run"), default=None, null=True, db_index=True
    )
    cluster = models.CharField(verbose_name=_("cluster"), max_length=100, null=True, blank=True)
    task = models.CharField(verbose_name=_("last task"), max_length=100, null=True, editable=False)
    q_options = PickledField(verbose_name=_("task options"), null=True)

    class Meta:
        db_table = "q_schedule"
        app_label = "qdjango"
        verbose_name = _("Scheduled task")
        verbose_name_plural = _("Scheduled tasks")
        ordering = ["next_run"]

    def __str__(self) -> str:
        return self.name or self.func

    def last_run(self) -> Task | None:
        """The task this schedule started last (None when it has not run or was pruned)."""
        return Task.objects.filter(id=self.task).first() if self.task else None

    def success(self) -> bool | None:
        task = self.last_run()
        return task.success if task else None

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The engine's own checks: the admin and scripts refuse what schedule() refuses.
        engine_schedules.check_values(self.as_values())
        if self.next_run is None:
            self.next_run = engine_schedules.first_run(self.schedule_type, self.cron)
        super().save(*args, **kwargs)

    def as_values(self) -> dict[str, Any]:
        """This schedule as the engine's ``q_schedule`` column values."""
        return {
            "id": self.pk or 0, "name": self.name, "func": self.func, "hook": self.hook,
            "args": self.args, "kwargs": self.kwargs, "schedule_type": self.schedule_type,
            "minutes": self.minutes, "cron": self.cron, "repeats": self.repeats,
            "next_run": self.next_run, "cluster": self.cluster, "task": self.task,
            "q_options": self.q_options,
        }  # fmt: skip


class OrmQ(models.Model):
    """A package waiting in the SQL broker (the admin's "Queued tasks")."""

    id = models.BigAutoField(verbose_name=_("ID"), primary_key=True)
    key = models.CharField(verbose_name=_("queue"), max_length=100)
    payload = models.BinaryField(verbose_name=_("package"))
    lock = models.DateTimeField(verbose_name=_("locked until"), null=True)
    deliveries = models.IntegerField(verbose_name=_("deliveries"), default=0)

    class Meta:
        db_table = "q_queue"
        app_label = "qdjango"
        verbose_name = _("Queued task")
        verbose_name_plural = _("Queued tasks")
        indexes = [models.Index(fields=["key", "lock"], name="ix_q_queue_key_lock")]

    def task(self) -> Any:
        """The task message in the package, verified with this queue's signature."""
        from qengine.runtime import get_signer

        from .conf import load

        config = load().replace(name=self.key)
        return get_signer(config).loads(bytes(self.payload))

    def func(self) -> str:
        from qengine.task import func_name

        return func_name(self.task().func) or ""

    def task_id(self) -> str:
        return str(self.task().id)

    def name(self) -> str:
        return str(self.task().name)

    def __str__(self) -> str:
        return f"{self.key}:{self.pk}"


class CacheEntry(models.Model):
    """A cached result when the cache is the store (engine table ``q_cache``)."""

    key = models.CharField(max_length=255, primary_key=True)
    value = models.BinaryField()
    expires = models.DateTimeField(null=True, db_index=True)

    class Meta:
        db_table = "q_cache"
        app_label = "qdjango"


class StatEntry(models.Model):
    """A cluster's heartbeat when the broker is not Redis (engine table ``q_stat``)."""

    cluster_id = models.CharField(max_length=64, primary_key=True)
    data = models.TextField()
    expires = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "q_stat"
        app_label = "qdjango"


class MetaEntry(models.Model):
    """Facts about the installation (engine table ``q_meta``)."""

    key = models.CharField(max_length=100, primary_key=True)
    value = models.TextField()

    class Meta:
        db_table = "q_meta"
        app_label = "qdjango"
