"""The Django admin pages of qdjango: finished tasks, schedules and the ORM broker's queue.

The spec's four pages (chapter 1.11) on Django's stock ``ModelAdmin``:
successful and failed tasks (read-only; the cluster writes them), failed
tasks with a "resubmit" action that queues them again through the engine,
scheduled tasks (edited with the engine's own checks) and the queued
tasks of a broker kept in a Django database.

``OrmQ`` is always registered and its page always listed: it shows the
queue when the broker keeps it in one of the project's databases (the
``orm`` broker, or no broker setting: the SQL broker on the store's
database), and otherwise says so and names the broker, rather than
hiding a page the documentation promises. The broker is looked up per
request: registration happens at import time, which must not read
settings, and a decision per request follows ``override_settings``.

The class names are django_q's (``TaskAdmin``, ``FailAdmin``,
``ScheduleAdmin``, ``QueueAdmin``), so the spec's way of customizing a
page (unregister, subclass, register) works unchanged.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import truncatechars
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from qengine.api import resubmit
from qengine.brokers import broker_class
from qengine.config import Config, mask_url
from qengine.errors import QEngineError
from qengine.runtime import get_config

from .db import alias_of
from .forms import ScheduleForm
from .models import Failure, OrmQ, Schedule, Success, Task

__all__ = ["FailAdmin", "QueueAdmin", "ScheduleAdmin", "TaskAdmin", "queue_alias", "retry_failed"]

_TASK_FIELDS = (
    "id", "name", "func", "hook", "args", "kwargs", "result", "group", "started", "stopped",
    "time_taken", "success", "attempt_count", "cluster",
)  # fmt: skip


class _TaskPage(admin.ModelAdmin):
    """What both task pages share: view and delete only, since clusters write the rows."""

    fields: Any = _TASK_FIELDS
    readonly_fields: Any = _TASK_FIELDS
    search_fields = ("name", "func", "group")
    list_filter = ("group",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("time taken"))
    def time_taken(self, obj: Task) -> float:
        """Seconds from the start to the end of the run."""
        return obj.time_taken()


class TaskAdmin(_TaskPage):
    """Successful tasks (the ``Success`` proxy)."""

    list_display = ("name", "func", "started", "stopped", "time_taken", "group")


@admin.action(description=_("Resubmit selected tasks to queue"), permissions=["delete"])
def retry_failed(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    """Queue the selected failed tasks again with ``qengine.api.resubmit``.

    The engine queues each on the configured broker (or runs it, in sync
    mode) and removes the failure row once it is queued, so a task shows
    once in the results. Needs the delete permission for that reason.
    """
    queued = 0
    for failure in queryset:
        try:
            resubmit(failure.pk)
        except LookupError:
            continue  # deleted meanwhile (another user, a prune): nothing left to resubmit
        except QEngineError as exc:
            # The broker is down or refuses the package: say so and keep what is left as is.
            modeladmin.message_user(
                request,
                gettext("Could not queue task %(name)s again: %(error)s")
                % {"name": failure.name, "error": exc},
                messages.ERROR,
            )
            break
        queued += 1
    if queued:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d failed task was queued again.",
                "%(count)d failed tasks were queued again.",
                queued,
            )
            % {"count": queued},
            messages.SUCCESS,
        )


class FailAdmin(_TaskPage):
    """Failed tasks (the ``Failure`` proxy), with the resubmit action."""

    list_display = ("name", "func", "started", "stopped", "short_result")
    fields = tuple("error" if field == "result" else field for field in _TASK_FIELDS)
    readonly_fields = fields
    actions = [retry_failed]

    @admin.display(description=_("error"))
    def short_result(self, obj: Task) -> str:
        """The error's first line (the traceback follows it), so the list stays one line a task."""
        return truncatechars(str(obj.result).partition("\n")[0], 100)

    @admin.display(description=_("error"))
    def error(self, obj: Task) -> SafeString:
        """The whole error with its traceback, line breaks kept."""
        return format_html("<pre>{}</pre>", obj.result)


class ScheduleAdmin(admin.ModelAdmin):
    """Scheduled tasks: create, edit, delete; each with a link to the task it ran last."""

    form = ScheduleForm
    list_display = (
        "id", "name", "func", "schedule_type", "repeats", "cluster", "next_run", "last_run",
        "success",
    )  # fmt: skip
    list_display_links = ("id", "name")
    list_filter = ("next_run", "schedule_type")
    search_fields = ("name", "func")
    readonly_fields = ("last_run", "success")
    fieldsets = (
        (None, {"fields": ("name", "func", "hook", "args", "kwargs", "cluster")}),
        (_("When"), {"fields": ("schedule_type", "minutes", "cron", "repeats", "next_run")}),
        (_("Last run"), {"fields": ("last_run", "success")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        # A schedule being added has not run yet: no "Last run" section.
        return self.fieldsets if obj is not None else self.fieldsets[:-1]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        # The last task's name and outcome in the same query: no two queries per row.
        last = Task.objects.filter(pk=OuterRef("task"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_task_name=Subquery(last.values("name")[:1]),
                last_task_success=Subquery(last.values("success")[:1]),
            )
        )

    @admin.display(description=_("Last run"))
    def last_run(self, obj: Schedule) -> SafeString | str:
        """The task this schedule ran last, linked to its success or failure page.

        Empty when the schedule has not run yet or its task was deleted.
        """
        name = getattr(obj, "last_task_name", None)
        if name is None:
            # The admin shows None as "None" in read-only fields: give its empty mark.
            return self.get_empty_value_display()
        model = Success if getattr(obj, "last_task_success", None) else Failure
        try:
            url = reverse(
                f"{self.admin_site.name}:qdjango_{model._meta.model_name}_change",
                args=[obj.task],
            )
        except NoReverseMatch:  # that page was unregistered: show the name alone
            return f"[{name}]"
        return format_html('<a href="{}">[{}]</a>', url, name)

    @admin.display(description=_("Success"), boolean=True)
    def success(self, obj: Schedule) -> bool | None:
        """Whether the last run succeeded; unknown when there is none."""
        value = getattr(obj, "last_task_success", None)
        return None if value is None else bool(value)


def queue_alias() -> str | None:
    """The Django database holding the broker's queue, or None when the broker keeps it elsewhere.

    The ``orm`` broker, and the SQL broker on the store when no broker is
    set, are the SQL broker on a Django database (``django://<alias>``).
    """
    config = get_config()
    if not broker_class(config).keeps_queue_in_sql:
        return None  # SQS and MongoDB leave broker_url at the store's URL: the broker decides
    return alias_of(config.broker_url)


def _broker_name(config: Config) -> str:
    """The broker, for people: its product, class path or URL (password hidden)."""
    if config.broker_class:
        return config.broker_class
    return broker_class(config).product or mask_url(config.broker_url)


_UNREADABLE = _("(cannot be read)")


class QueueAdmin(admin.ModelAdmin):
    """Packages waiting in a broker on a Django database: view and delete.

    With another broker (Redis, SQS…) the page lists nothing and says why.
    """

    list_display = ("id", "key", "task_name", "func", "lock", "deliveries")
    list_filter = ("key",)
    fields: Any = ("id", "key", "task_id", "task_name", "func", "group", "lock", "deliveries")
    readonly_fields: Any = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrmQ]:
        alias = queue_alias()
        queryset = super().get_queryset(request)
        return queryset.none() if alias is None else queryset.using(alias)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if queue_alias() is None and request.method == "GET":
            self.message_user(
                request,
                gettext(
                    "Queued tasks are listed here only when the broker keeps them in one of "
                    "this site's databases: Q_CLUSTER['orm'], or no broker setting at all "
                    "(the queue then lives with the results). This site's broker is "
                    "%(broker)s: manage.py qinfo and manage.py qmonitor show its queue."
                )
                % {"broker": _broker_name(get_config())},
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return queue_alias() is not None and super().has_delete_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @staticmethod
    def _message(obj: OrmQ) -> Any:
        """The task message in the package, unpacked once per row; None if it cannot be.

        A package signed by a cluster with another key or name, or made by
        another version, must not break the page listing all the others.
        """
        if not hasattr(obj, "_qdjango_message"):
            try:
                obj._qdjango_message = obj.task()
            except QEngineError:
                obj._qdjango_message = None
        return obj._qdjango_message

    @admin.display(description=_("task ID"))
    def task_id(self, obj: OrmQ) -> str:
        message = self._message(obj)
        return str(message.id) if message is not None else _UNREADABLE

    @admin.display(description=_("name"))
    def task_name(self, obj: OrmQ) -> str:
        message = self._message(obj)
        return str(message.name) if message is not None else _UNREADABLE

    @admin.display(description=_("function"))
    def func(self, obj: OrmQ) -> str:
        from qengine.task import func_name

        message = self._message(obj)
        return (func_name(message.func) or "") if message is not None else _UNREADABLE

    @admin.display(description=_("group"))
    def group(self, obj: OrmQ) -> str:
        message = self._message(obj)
        if message is None or message.group is None:
            return self.get_empty_value_display()
        return str(message.group)


admin.site.register(Success, TaskAdmin)
admin.site.register(Failure, FailAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(OrmQ, QueueAdmin)
