"""A Django project made as users make one runs its own ``manage.py test`` with qdjango.

``django-admin startproject`` and ``startapp``, ``"qdjango"`` added to
INSTALLED_APPS and ``Q_CLUSTER = {"sync": True}`` (the usual advice for
tests), a model, a task that changes it, and the project's own
``TestCase``/``TransactionTestCase``. The project's tests run in a
subprocess with Django's test runner, on SQLite as ``startproject`` leaves
it (an in-memory test database), SQLite with a file test database,
PostgreSQL and MariaDB, and once with a router that sends qdjango's models
to a second database. Every assertion about qdjango lives in the
project's tests below; this module only builds the project and reads the
runner's verdict, and for the servers checks that the test database is gone
afterwards (nothing kept a connection to it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.examples.conftest import ROOT

MODELS = """
from django.db import models


class Order(models.Model):
    total = models.IntegerField()
    paid = models.BooleanField(default=False)
"""

TASKS = """
from .models import Order


def mark_paid(order_id):
    order = Order.objects.get(pk=order_id)  # a row the test made, not committed
    order.paid = True
    order.save()
    return order.total


def fail(order_id):
    raise ValueError(f"order {order_id} cannot be paid")
"""

TESTS = """
from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase

from qdjango.models import Failure, Success, Task
from qdjango.tasks import (
    async_task, count_group, delete_group, fetch, fetch_group, queue_size, result, result_group,
)

from .models import Order


class Checks:
    def test_a_task_sees_the_row_and_its_result_is_read_at_once(self):
        order = Order.objects.create(total=42)
        task_id = async_task("shop.tasks.mark_paid", order.pk, group="pay")
        self.assertEqual(result(task_id), 42)
        task = fetch(task_id)
        self.assertTrue(task.success)
        self.assertEqual(task.result, 42)
        order.refresh_from_db()
        self.assertTrue(order.paid)
        self.assertEqual(Success.objects.filter(id=task_id).count(), 1)
        self.assertEqual(count_group("pay"), 1)
        self.assertEqual(result_group("pay"), [42])
        self.assertEqual([t.id for t in fetch_group("pay")], [task_id])

    def test_a_failure_is_stored_and_the_group_delete_is_seen_by_the_next_read(self):
        order = Order.objects.create(total=1)
        task_id = async_task("shop.tasks.fail", order.pk, group="bad")
        self.assertIn("cannot be paid", result(task_id))
        self.assertTrue(Failure.objects.filter(id=task_id).exists())
        self.assertIn("cannot be paid", fetch(task_id).result)
        self.assertEqual(count_group("bad", failures=True), 1)
        delete_group("bad", tasks=True)
        self.assertEqual(count_group("bad", failures=True), 0)
        self.assertIsNone(fetch(task_id))

    def test_what_earlier_tests_stored_was_rolled_back_or_flushed(self):
        self.assertEqual(Task.objects.count(), 0)
        self.assertEqual(Order.objects.count(), 0)
        self.assertEqual(queue_size(), 0)

    def test_only_djangos_connection_reaches_the_database(self):
        async_task("shop.tasks.mark_paid", Order.objects.create(total=3).pk)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                )
                self.assertEqual(cursor.fetchone()[0], 1)
        elif connection.vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE()"
                )
                self.assertEqual(cursor.fetchone()[0], 1)


class OrderTests(Checks, TestCase):
    def test_on_commit_queues_only_when_the_transaction_commits(self):
        order = Order.objects.create(total=7)
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            task_id = async_task("shop.tasks.mark_paid", order.pk, on_commit=True)
            self.assertIsNone(fetch(task_id))
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(result(task_id), 7)


class OrderTransactionTests(Checks, TransactionTestCase):
    def test_a_rolled_back_transaction_queues_nothing_and_keeps_nothing(self):
        with self.assertRaises(RuntimeError), transaction.atomic():
            order = Order.objects.create(total=5)
            async_task("shop.tasks.mark_paid", order.pk, on_commit=True)
            raise RuntimeError("rollback")
        self.assertEqual(Task.objects.count(), 0)

    def test_on_commit_queues_when_the_transaction_commits(self):
        with transaction.atomic():
            order = Order.objects.create(total=9)
            task_id = async_task("shop.tasks.mark_paid", order.pk, on_commit=True)
            self.assertIsNone(fetch(task_id))
        self.assertEqual(result(task_id), 9)
"""


ROUTER = '''
class TasksRouter:
    """qdjango's models live in the "tasks" database, everything else in "default"."""

    def _pick(self, model, **hints):
        return "tasks" if model._meta.app_label == "qdjango" else None

    db_for_read = db_for_write = _pick

    def allow_migrate(self, db, app_label, **hints):
        return db == ("tasks" if app_label == "qdjango" else "default")
'''

ROUTED_TESTS = """
from io import StringIO

from django.core.management import call_command
from django.db import connections
from django.test import TestCase, override_settings

from qdjango.models import Task
from qdjango.tasks import async_task, count_group, fetch, result
from qengine.errors import StoreError

from .models import Order


class RoutedTests(TestCase):
    databases = {"default", "tasks"}

    def test_the_api_and_commands_follow_the_router(self):
        order = Order.objects.create(total=11)
        task_id = async_task("shop.tasks.mark_paid", order.pk, group="g")
        self.assertEqual(result(task_id), 11)
        self.assertEqual(fetch(task_id).result, 11)
        self.assertEqual(count_group("g"), 1)
        self.assertEqual(Task.objects.using("tasks").filter(id=task_id).count(), 1)
        self.assertNotIn("q_task", connections["default"].introspection.table_names())
        out = StringIO()
        call_command("qinfo", stdout=out)
        self.assertIn("Successes", out.getvalue())

    def test_a_store_pinned_to_a_database_without_the_tables_says_to_migrate(self):
        with override_settings(Q_CLUSTER={"sync": True, "store": "default"}):
            with self.assertRaises(StoreError) as caught:
                async_task("shop.tasks.mark_paid", Order.objects.create(total=1).pk)
        self.assertIn("'default'", str(caught.exception))
        self.assertIn("migrate", str(caught.exception))
"""


def _servers() -> dict[str, dict[str, object]]:
    run = uuid.uuid4().hex[:8]
    return {
        "postgres": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": f"qdjango_user_{run}",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        },
        "mariadb": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": f"qdjango_user_{run}",
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": "3306",
        },
    }


def make_project(where: Path, database: str) -> tuple[Path, dict[str, object] | None]:
    """startproject + startapp, then what the README tells a user to add; return the folder."""
    env = _env()
    where.mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(where)],
        check=True, env=env,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "manage.py", "startapp", "shop"], cwd=where, check=True, env=env
    )
    (where / "shop" / "models.py").write_text(MODELS)
    (where / "shop" / "tasks.py").write_text(TASKS)
    (where / "shop" / "tests.py").write_text(ROUTED_TESTS if database == "sqlite-routed" else TESTS)
    settings = where / "mysite" / "settings.py"
    text = settings.read_text()
    for quote in "'\"":
        last = f"    {quote}django.contrib.staticfiles{quote},\n"
        text = text.replace(last, f"{last}    {quote}qdjango{quote},\n    {quote}shop{quote},\n")
    assert "'qdjango'" in text or '"qdjango"' in text, "startproject's INSTALLED_APPS changed shape"
    text += '\nQ_CLUSTER = {"sync": True}\n'
    server = None
    if database == "sqlite-routed":
        (where / "mysite" / "routers.py").write_text(ROUTER)
        text += (
            '\nDATABASES["tasks"] = {"ENGINE": "django.db.backends.sqlite3", '
            '"NAME": BASE_DIR / "tasks.sqlite3"}\n'
            'DATABASE_ROUTERS = ["mysite.routers.TasksRouter"]\n'
        )
    elif database == "sqlite-file":
        text += '\nDATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}\n'
    elif database in {"postgres", "mariadb"}:
        server = _servers()[database]
        text += f"\nDATABASES = {{'default': {server!r}}}\n"
        if database == "mariadb":
            # No mysqlclient build here: PyMySQL's stand-in, as its README shows.
            (where / "mysite" / "__init__.py").write_text(
                "import pymysql\n\npymysql.install_as_MySQLdb()\n"
            )
    settings.write_text(text)
    return where, server


def _makemigrations(project: Path) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "shop"], cwd=project, check=True,
        env=_env(), capture_output=True,
    )  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
    env["PYTHONPATH"] = str(ROOT)  # qdjango from this checkout, as an installed package would be
    return env


def _server_sql(server: dict[str, object], statement: str) -> Any:
    """Run one statement on the server outside any database (made and dropped by the test)."""
    if "postgresql" in str(server["ENGINE"]):
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
        ) as conn:
            return conn.execute(statement).fetchall() if "SELECT" in statement else None
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall()
    finally:
        conn.close()


@contextlib.contextmanager
def _project_database(server: dict[str, object] | None) -> Iterator[None]:
    """The project's own database exists, as a user's does; it is dropped afterwards."""
    if server is None:
        yield
        return
    _server_sql(server, f"CREATE DATABASE {server['NAME']}")
    try:
        yield
    finally:
        _server_sql(server, f"DROP DATABASE IF EXISTS {server['NAME']}")


def _test_database_gone(server: dict[str, object]) -> bool:
    name = f"test_{server['NAME']}"
    if "postgresql" in str(server["ENGINE"]):
        return not _server_sql(server, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    return not _server_sql(server, f"SHOW DATABASES LIKE '{name}'")


@pytest.mark.parametrize(
    "database",
    [
        "sqlite-memory",
        "sqlite-file",
        "sqlite-routed",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_the_projects_own_tests_pass(tmp_path, database, request) -> None:
    if database in {"postgres", "mariadb"}:
        request.getfixturevalue(f"{database}_url")  # skips (fails under CI) without the server
    project, server = make_project(tmp_path / "project", database)
    with _project_database(server):
        _makemigrations(project)
        run = subprocess.run(
            [sys.executable, "manage.py", "test", "shop", "--noinput", "-v", "2"],
            cwd=project, env=_env(), capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert f"Ran {2 if database == 'sqlite-routed' else 11} tests" in output, output
    assert "OK" in output
    if database == "sqlite-memory":
        assert "in-memory" in output or "memorydb" in output, "startproject's test DB is in memory"
    if server is not None:
        assert _test_database_gone(server), f"the test database was left behind:\n{output}"


PYTEST_TESTS = """
import pytest

from qdjango.models import Task
from qdjango.tasks import async_task, fetch, result

from shop.models import Order


def test_with_the_db_fixture(db):
    order = Order.objects.create(total=4)
    task_id = async_task("shop.tasks.mark_paid", order.pk)
    assert result(task_id) == 4
    assert fetch(task_id).success
    order.refresh_from_db()
    assert order.paid


def test_the_previous_test_rolled_back(db):
    assert Task.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_with_a_transactional_database():
    task_id = async_task("shop.tasks.mark_paid", Order.objects.create(total=6).pk)
    assert result(task_id) == 6
"""


@pytest.mark.parametrize(
    "database", ["sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_pytest_django_tests_of_the_project_pass(tmp_path, database, request) -> None:
    if database == "postgres":
        request.getfixturevalue("postgres_url")
    project, server = make_project(tmp_path / "project", database)
    (project / "shop" / "test_pytest.py").write_text(PYTEST_TESTS)
    with _project_database(server):
        _makemigrations(project)
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--ds=mysite.settings",
             "-o", "addopts=", "-o", "filterwarnings=", "shop/test_pytest.py", "-q"],
            cwd=project, env=_env(), capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "3 passed" in output, output
    if server is not None:
        assert _test_database_gone(server), f"the test database was left behind:\n{output}"


def test_qcluster_refuses_an_in_memory_database_with_a_clear_message(tmp_path) -> None:
    project, _ = make_project(tmp_path / "project", "sqlite-memory")
    _makemigrations(project)
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nDATABASES["default"]["NAME"] = ":memory:"\n')
    run = subprocess.run(
        [sys.executable, "manage.py", "qcluster"],
        cwd=project, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "in-memory SQLite database" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
