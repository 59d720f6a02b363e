"""What the cluster runs: the report itself, the hook that mails it, the hourly clean-up.

Workers import these functions by their dotted names (``reports.tasks.…``),
so they live in a module of an installed app, not in a view.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.html import format_html

import qengine
from qdjango.models import Task
from qdjango.tasks import async_task

REPORT_FUNC = "reports.tasks.create_html_report"


def create_html_report(title: str, email: str) -> str:
    """Build the report: the slow part of the request, done by a worker with the ORM at hand."""
    done = Task.objects.filter(func=REPORT_FUNC, success=True).count()
    html = format_html(
        "<h1>{}</h1><p>Prepared for {}: the site has {} user(s) and has built {} report(s) "
        "before this one.</p>",
        title, email, User.objects.count(), done,
    )  # fmt: skip
    return str(html)


def email_report(task: qengine.Task) -> None:
    """Hook: the cluster calls it with the finished report task, success or not.

    Mailing is queued as a task of its own, so a slow mail server holds up
    neither the hook nor the report's result.
    """
    title, email = task.args
    if task.success:
        async_task(
            "django.core.mail.send_mail",
            f"The report you requested: {title}",
            "Your report is in the HTML part of this message.",
            None,  # DEFAULT_FROM_EMAIL
            [email],
            html_message=task.result,
        )
    else:
        async_task("django.core.mail.mail_admins", "Report generation failed", str(task.result))


def delete_old_reports(days: int = 30) -> int:
    """Forget report tasks older than ``days``; scheduled hourly by the app's data migration."""
    since = timezone.now() - timedelta(days=days)
    deleted, _ = Task.objects.filter(func=REPORT_FUNC, stopped__lt=since).delete()
    return deleted
