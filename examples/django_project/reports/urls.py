"""The reports app's URLs."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "reports"
urlpatterns = [
    path("", views.index, name="index"),
    path("reports/", views.request_report, name="request"),
    path("tasks/<str:task_id>/", views.task_result, name="result"),
]
