"""``manage.py qcluster`` runs what the project enqueued, with Django set up in the workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import qengine
from qdjango.models import OrmQ, Task

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


def manage(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run a management command in a subprocess with the test settings (and test database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.qdjango.settings"
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_qcluster_run_once_runs_orm_queued_tasks_with_django_in_workers() -> None:
    plain = qengine.async_task("math.copysign", 3, -1)
    uses_orm = qengine.async_task("tests.qdjango.tasks.count_tasks")
    assert OrmQ.objects.count() == 2
    done = manage("qcluster", "--run-once")
    assert done.returncode == 0, done.stderr
    assert Task.objects.get(id=plain).result == -3.0
    counted = Task.objects.get(id=uses_orm)
    assert counted.success, counted.result
    assert isinstance(counted.result, int)
    assert OrmQ.objects.count() == 0
