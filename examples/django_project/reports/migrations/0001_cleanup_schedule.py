"""A data migration: ``migrate`` creates the hourly clean-up schedule (and unmigrating removes it).

It uses the historical model, as data migrations should: the schedule's
values are set here in full, ``next_run`` included (now: the first run comes
as soon as a cluster starts).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.utils import timezone

NAME = "delete-old-reports"


def create_schedule(apps: Any, schema_editor: Any) -> None:
    schedule = apps.get_model("qdjango", "Schedule")
    schedule.objects.using(schema_editor.connection.alias).get_or_create(
        name=NAME,
        defaults={
            "func": "reports.tasks.delete_old_reports",
            "kwargs": "days=30",
            "schedule_type": "H",
            "repeats": -1,
            "next_run": timezone.now(),
        },
    )


def delete_schedule(apps: Any, schema_editor: Any) -> None:
    schedule = apps.get_model("qdjango", "Schedule")
    schedule.objects.using(schema_editor.connection.alias).filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("qdjango", "0001_initial")]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
