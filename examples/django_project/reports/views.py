"""The site's pages: a form to request a report, the request itself, and a task's result."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from qdjango.models import Task
from qdjango.tasks import async_task, fetch

from .tasks import REPORT_FUNC


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The request form and the latest reports."""
    latest = Task.objects.filter(func=REPORT_FUNC).order_by("-stopped")[:10]
    return render(request, "reports/index.html", {"latest": latest})


@require_POST
def request_report(request: HttpRequest) -> JsonResponse:
    """Queue the report and answer at once (202) with where its result will be."""
    title = request.POST.get("title", "").strip() or "Quarterly report"
    email = request.POST.get("email", "").strip()
    try:
        validate_email(email)
    except ValidationError:
        return JsonResponse({"error": "a valid email address is needed"}, status=400)
    task_id = async_task(
        REPORT_FUNC, title, email, hook="reports.tasks.email_report", group="reports"
    )
    url = reverse("reports:result", args=[task_id])
    response = JsonResponse({"task_id": task_id, "result_url": url}, status=202)
    response["Location"] = url
    return response


@require_GET
def task_result(request: HttpRequest, task_id: str) -> JsonResponse:
    """A task's outcome once the cluster saved it; 202 with ``done: false`` until then."""
    task = fetch(task_id)
    if task is None:
        return JsonResponse({"id": task_id, "done": False}, status=202)
    return JsonResponse(
        {
            "id": task.id,
            "name": task.name,
            "func": task.func,
            "done": True,
            "success": task.success,
            "result": task.result if task.success else str(task.result),
            "started": task.started.isoformat(),
            "stopped": task.stopped.isoformat(),
            "time_taken_s": task.time_taken(),
        }
    )
