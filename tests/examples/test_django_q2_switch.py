"""A django-q2 project switches to qdjango by renaming ``django_q``, and its own tests pass.

The project is the one a user has: ``django-admin startproject`` (SQLite,
so Django's test database is in memory) plus the ``orders`` app and the
``Q_CLUSTER`` block of ``tests/examples/django_q2_project``, written with
django-q2's names. The switch is the mechanical part of
``docs/switching-from-django-q2.md``: ``django_q`` becomes ``qdjango`` in
``INSTALLED_APPS`` and imports, nothing else. Everything Django runs in
subprocesses in the project's folder (this session has no pytest-django).

No marker: no service and no cluster is involved, only a few short
``manage.py`` runs (a few seconds in all).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples.conftest import ROOT

TEMPLATE = Path(__file__).with_name("django_q2_project")
PROJECT = "shop"
DJANGO_Q = re.compile(r"\bdjango_q\b")
"""The module name as a whole word: ``django_q_schedule`` (a table) is left alone."""


def project_env() -> dict[str, str]:
    """This environment without QENGINE_* and DJANGO_* variables, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def manage(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=project, env=project_env(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path) -> Path:
    """The shop as it runs on django-q2: startproject, the orders app, django_q installed."""
    root = tmp_path / PROJECT
    root.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "django", "startproject", PROJECT, str(root)],
        env=project_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shutil.copytree(TEMPLATE / "orders", root / "orders")
    settings = root / PROJECT / "settings.py"
    text = settings.read_text()
    apps_end = "    'django.contrib.staticfiles',\n]"
    assert text.count(apps_end) == 1, "startproject's INSTALLED_APPS changed shape"
    text = text.replace(
        apps_end, "    'django.contrib.staticfiles',\n    'django_q',\n    'orders',\n]"
    )
    settings.write_text(text + "\n\n" + (TEMPLATE / "settings_django_q2.py").read_text())
    return root


def switch_to_qdjango(project: Path) -> list[str]:
    """The checklist's renaming: ``django_q`` → ``qdjango`` outside migrations; what changed."""
    changed = []
    for path in sorted(project.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # the checklist leaves migrations alone (none here mentions django_q)
        text = path.read_text()
        renamed = DJANGO_Q.sub("qdjango", text)
        if renamed != text:
            path.write_text(renamed)
            changed.append(path.relative_to(project).as_posix())
    return changed


def test_the_projects_own_tests_pass_after_renaming_django_q_to_qdjango(project):
    before = manage(project, "check")
    assert before.returncode != 0
    assert "No module named 'django_q'" in before.stderr, "the project must need django_q"

    changed = switch_to_qdjango(project)

    assert changed == ["orders/tests.py", f"{PROJECT}/settings.py"]
    assert "'qdjango'," in (project / PROJECT / "settings.py").read_text()
    tested = manage(project, "test", "--noinput")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Ran 3 tests" in tested.stderr
    assert re.search(r"^OK$", tested.stderr, re.MULTILINE), tested.stderr
    assert not (project / "db.sqlite3").exists(), "the test database must have been in memory"


# django-q2's two tables on SQLite, with the columns the importer reads.
DJANGO_Q_TABLES = """
CREATE TABLE "django_q_schedule" (
    "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "func" varchar(256) NOT NULL,
    "hook" varchar(256) NULL, "args" text NULL, "kwargs" text NULL,
    "schedule_type" varchar(2) NOT NULL, "repeats" integer NOT NULL, "next_run" datetime NULL,
    "task" varchar(100) NULL, "name" varchar(100) NULL,
    "minutes" smallint unsigned NULL CHECK ("minutes" >= 0), "cron" varchar(100) NULL,
    "cluster" varchar(100) NULL, "intended_date_kwarg" varchar(100) NULL
);
CREATE TABLE "django_q_task" (
    "id" varchar(32) NOT NULL PRIMARY KEY, "name" varchar(100) NOT NULL,
    "func" varchar(256) NOT NULL, "hook" varchar(256) NULL, "args" text NULL,
    "kwargs" text NULL, "result" text NULL, "started" datetime NOT NULL,
    "stopped" datetime NOT NULL, "success" bool NOT NULL, "group" varchar(100) NULL,
    "attempt_count" integer NOT NULL, "cluster" varchar(100) NULL
);
"""
OLD_TASK_ID = "5f0c3e1a9b8d4c2e8f7a6b5c4d3e2f10"


def picklefield(value: object) -> str:
    """A value as django-picklefield stores it: base64 of a pickle."""
    return base64.b64encode(pickle.dumps(value)).decode()


def add_django_q_rows(database: Path) -> None:
    """One schedule and one finished task, written as django-q2 wrote them."""
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.executescript(DJANGO_Q_TABLES)
        # django-q2's schedule() stores str(args) and str(kwargs): "()" and "{}" without any.
        db.execute(
            "INSERT INTO django_q_schedule (id, name, func, args, kwargs, schedule_type, "
            "repeats, next_run, task) VALUES (7, 'remind-unpaid', 'orders.tasks.remind_unpaid', "
            "'()', '{}', 'D', -1, '2030-01-01 06:00:00', ?)",
            [OLD_TASK_ID],
        )
        db.execute(
            "INSERT INTO django_q_task (id, name, func, args, kwargs, result, started, stopped, "
            "success, attempt_count, cluster) VALUES (?, 'alpha-bravo-charlie-delta', "
            "'orders.tasks.remind_unpaid', ?, ?, ?, '2029-12-31 06:00:00', "
            "'2029-12-31 06:00:01', 1, 1, 'shop')",
            [OLD_TASK_ID, picklefield(()), picklefield({}), picklefield(3)],
        )


READ_BACK = """
import json
from qdjango.models import Schedule, Task
from qengine.schedules import Schedule as EngineSchedule
item = Schedule.objects.get(name="remind-unpaid")
engine = EngineSchedule.get("remind-unpaid")
task = Task.objects.get(id="OLD_TASK_ID")
print(json.dumps({
    "schedule": [item.func, item.schedule_type, item.repeats, item.next_run.isoformat(), item.task],
    "engine": [list(engine.args), engine.kwargs],
    "task": [task.func, task.success, task.result, task.cluster],
}))
""".replace("OLD_TASK_ID", OLD_TASK_ID)


def test_migrate_then_qimport_djangoq_brings_the_old_schedule_and_history(project):
    switch_to_qdjango(project)
    add_django_q_rows(project / "db.sqlite3")

    migrated = manage(project, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    imported = manage(project, "qimport_djangoq", "--tasks")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert imported.stdout.splitlines() == [
        "schedules: 1 imported, 0 imported before, 0 skipped",
        "tasks: 1 imported, 0 imported before, 0 skipped",
    ], imported.stderr

    read = manage(project, "shell", "-v", "0", "-c", READ_BACK)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {
        "schedule": [
            "orders.tasks.remind_unpaid", "D", -1, "2030-01-01T06:00:00+00:00", OLD_TASK_ID
        ],
        "engine": [[], {}],
        "task": ["orders.tasks.remind_unpaid", True, 3, "shop"],
    }  # fmt: skip
    again = manage(project, "qimport_djangoq", "--tasks")
    assert again.stdout.splitlines() == [
        "schedules: 0 imported, 1 imported before, 0 skipped",
        "tasks: 0 imported, 1 imported before, 0 skipped",
    ], again.stderr
