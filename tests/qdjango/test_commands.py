"""``manage.py qinfo``, ``qmonitor``, ``qmemory`` and ``qimport_djangoq`` on the test database."""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import signal
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from qdjango.management.commands.qimport_djangoq import decode_pickled
from qdjango.management.commands.qmonitor import monitor_app, uptime_text
from qdjango.models import MetaEntry, Schedule, Task
from qengine.runtime import get_config
from qengine.schedules import Schedule as EngineSchedule
from qengine.status import Stat
from tests.processes import ClusterProcess

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


def command(name: str, *args: str) -> tuple[str, str]:
    """Run a management command in this process; its stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def django_env() -> dict[str, str]:
    """The environment of a ``python -m django`` subprocess on the test settings and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.qdjango.settings"
    return env


# -- qinfo -------------------------------------------------------------------------------


def test_qinfo_prints_the_engines_summary() -> None:
    out, _ = command("qinfo")
    lines = out.splitlines()
    assert lines[0] == f"-- {get_config().name} summary --"
    assert lines[1].split()[:2] == ["Clusters", "0"]
    assert "Schedules" in lines[3]


SECRET = "django-secret-key-that-must-never-show"
MASKED_SETTINGS = {
    "name": "masked",
    "label": f"label holding {SECRET}",
    "broker": "redis://:redis-pass@127.0.0.1:6379/0",
    "error_reporter": {
        "sentry": {"dsn": "https://key:sentry-pass@sentry.example/1"},
        "rollbar": {"access_token": "rollbar-token"},
    },
}


@override_settings(SECRET_KEY=SECRET, Q_CLUSTER=MASKED_SETTINGS)
def test_qinfo_config_prints_the_configuration_with_every_secret_masked() -> None:
    out, _ = command("qinfo", "--config")
    assert '"name": "masked"' in out
    assert '"secret_key": "********"' in out
    assert "redis://:********@127.0.0.1:6379/0" in out
    for secret in (SECRET, "redis-pass", "sentry-pass", "rollbar-token"):
        assert secret not in out


def test_qinfo_health_fails_without_a_cluster() -> None:
    with pytest.raises(CommandError) as failed:
        command("qinfo", "--health")
    assert failed.value.returncode == 1


# -- clusters published elsewhere: qmemory and qmonitor --run-once --------------------------


@pytest.fixture
def remote_cluster() -> Iterator[Stat]:
    """A cluster's real status snapshot, published as if from another machine."""
    config = get_config()
    stat = Stat(
        cluster_id="remote-1", name=config.name, host="another-host", pid=4242,
        status="Working", workers=[4243, 4244, 4245], task_q_size=3, reincarnations=1,
        rejected=2, redeliveries=5, rss_kb=300 * 1024, tob=datetime.now(UTC).replace(microsecond=0),
    )  # fmt: skip
    stat.save(config)
    yield stat
    stat.clear(config)


def test_qmemory_shows_a_cluster_of_another_host_by_its_published_total(remote_cluster) -> None:
    out, _ = command("qmemory", "--run-once", "--workers")
    line = next(text for text in out.splitlines() if "remote-1" in text)
    assert line.split()[:5] == ["another-host", "remote-1", "3", "-", "-"]
    assert "300.0  (not on this host)" in line
    assert "worker" not in out, "workers of another host cannot be measured"
    assert out.splitlines()[-1].startswith("This host: ")


def test_qmonitor_run_once_prints_the_summary_and_the_clusters_table(remote_cluster) -> None:
    out, _ = command("qmonitor", "--run-once")
    lines = out.splitlines()
    assert lines[0] == f"-- {get_config().name} summary --"
    assert lines[1].split()[:4] == ["Clusters", "1", "Workers", "3"]
    header = lines.index(next(text for text in lines if text.startswith("Host")))
    assert lines[header].split() == [
        "Host", "Id", "State", "Pool", "TQ", "RQ", "RC", "Rej", "Redel", "Up",
    ]  # fmt: skip
    row = lines[header + 1].split()
    assert row[:9] == ["another-host", "remote-1", "Working", "3", "3", "0", "1", "2", "5"]
    assert row[9].startswith("0:00:")
    assert lines[header + 2].split() == ["3", "3", "0", "2", "5"], "totals of the counts"


def test_uptime_reads_like_the_spec() -> None:
    assert uptime_text(75) == "0:01:15"
    assert uptime_text(26 * 3600 + 61) == "26:01:01"


def test_qmonitor_opens_the_textual_monitor_on_the_projects_configuration() -> None:
    app = monitor_app(get_config())
    assert app.source.config is get_config()

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(500):
                await pilot.pause()
                if app.snapshots and all(worker.is_finished for worker in app.workers):
                    break
                await asyncio.sleep(0.01)
            assert app.snapshots >= 1
            assert app.sub_title.startswith(f"{get_config().name} · ")
            await pilot.press("q")

    asyncio.run(scenario())


def test_qmemory_refreshes_until_interrupted() -> None:
    # As at a terminal: a run started in the background (``cmd &``) ignores SIGINT, a child
    # inherits that, and Python keeps an ignored SIGINT ignored; a handler is not inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = subprocess.Popen(
            [sys.executable, "-m", "django", "qmemory", "--interval", "0.1"],
            cwd=ROOT, env=django_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    with started as process:
        try:
            assert process.stdout is not None
            headers = 0
            deadline = time.monotonic() + 30
            while headers < 2 and time.monotonic() < deadline:
                headers += process.stdout.readline().startswith("-- ")
            assert headers == 2, "printed again after the interval"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
        finally:
            if process.poll() is None:
                process.kill()


# -- a real cluster ----------------------------------------------------------------------


@pytest.fixture
def running_cluster(tmp_path) -> Iterator[ClusterProcess]:
    """``python -m django qcluster`` in the background, until its status is published."""
    process = ClusterProcess(django_env(), tmp_path / "qcluster.log", ["qcluster"], module="django")
    try:
        process.wait_published(get_config())
        yield process
    finally:
        process.shutdown()


@pytest.mark.cluster
def test_commands_see_a_running_cluster(running_cluster) -> None:
    pid = running_cluster.pid
    stat = next(s for s in Stat.get_all(get_config()) if s.pid == pid)
    assert len(stat.workers) == 2

    ids, _ = command("qinfo", "--ids")
    assert ids.split() == [str(stat.cluster_id)]

    summary, _ = command("qinfo")
    assert summary.splitlines()[1].split()[:4] == ["Clusters", "1", "Workers", "2"]

    memory, _ = command("qmemory", "--run-once", "--workers")
    lines = memory.splitlines()
    row = next(text for text in lines if text.split()[1:2] == [str(stat.cluster_id)])
    cluster_mb, workers_mb, total_mb = (float(v) for v in row.split()[3:6])
    assert cluster_mb > 10
    assert workers_mb > 10
    assert total_mb == pytest.approx(cluster_mb + workers_mb, abs=0.2)
    for worker in stat.workers:
        line = next(text for text in lines if text.split()[:2] == ["worker", str(worker)])
        assert float(line.split()[2]) > 1

    monitor, _ = command("qmonitor", "--run-once")
    row = next(text for text in monitor.splitlines() if str(stat.cluster_id) in text).split()
    assert row[2] in {"Idle", "Working"}
    assert row[3] == "2"


# -- qimport_djangoq ---------------------------------------------------------------------


def encoded(value: Any, *, compress: bool = False) -> str:
    """A value as django-picklefield stores it: base64 of a pickle, zlib first if compressing."""
    data = pickle.dumps(value, protocol=-1)
    return base64.b64encode(zlib.compress(data) if compress else data).decode()


UNIMPORTABLE = base64.b64encode(b"\x80\x02cnot_a_module\nThing\n)\x81.").decode()
"""A pickle of an instance of a class whose module is not installed here."""


def wrapped(value: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """``value`` in django-picklefield's ``_ObjectWrapper``, as it stores model instances.

    django-picklefield is not installed: a module of that name, holding the
    wrapper class, exists only while the pickle is made.
    """

    class _ObjectWrapper:
        __slots__ = ("_obj",)

        def __init__(self, obj: Any) -> None:
            self._obj = obj

    _ObjectWrapper.__module__ = "picklefield.fields"
    _ObjectWrapper.__qualname__ = "_ObjectWrapper"
    package, fields = types.ModuleType("picklefield"), types.ModuleType("picklefield.fields")
    fields._ObjectWrapper = _ObjectWrapper  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picklefield", package)
    monkeypatch.setitem(sys.modules, "picklefield.fields", fields)
    text = encoded(_ObjectWrapper(value))
    monkeypatch.delitem(sys.modules, "picklefield.fields")
    monkeypatch.delitem(sys.modules, "picklefield")
    return text


def _ddl(q2: bool) -> list[str]:
    """django-q 1.3.6's tables (``q2``: django-q2's), as Django's migrations create them."""
    pg = connection.vendor == "postgresql"
    auto = "serial NOT NULL PRIMARY KEY" if pg else "integer NOT NULL PRIMARY KEY AUTOINCREMENT"
    moment = "timestamp with time zone" if pg else "datetime"
    boolean = "boolean" if pg else "bool"
    schedule = [
        f'"id" {auto}', '"func" varchar(256) NOT NULL', '"hook" varchar(256) NULL',
        '"args" text NULL', '"kwargs" text NULL',
        f'"schedule_type" varchar({2 if q2 else 1}) NOT NULL', '"repeats" integer NOT NULL',
        f'"next_run" {moment} NULL', '"task" varchar(100) NULL', '"name" varchar(100) NULL',
        '"minutes" smallint NULL CHECK ("minutes" >= 0)', '"cron" varchar(100) NULL',
        '"cluster" varchar(100) NULL',
    ]  # fmt: skip
    task = [
        '"id" varchar(32) NOT NULL PRIMARY KEY', '"name" varchar(100) NOT NULL',
        '"func" varchar(256) NOT NULL', '"hook" varchar(256) NULL', '"args" text NULL',
        '"kwargs" text NULL', '"result" text NULL', f'"started" {moment} NOT NULL',
        f'"stopped" {moment} NOT NULL', f'"success" {boolean} NOT NULL',
        '"group" varchar(100) NULL', '"attempt_count" integer NOT NULL',
    ]  # fmt: skip
    if q2:
        schedule.append('"intended_date_kwarg" varchar(100) NULL')
        task.append('"cluster" varchar(100) NULL')
    queue = [f'"id" {auto}', '"key" varchar(100) NOT NULL', '"payload" text NOT NULL',
             f'"lock" {moment} NULL']  # fmt: skip
    return [
        f'CREATE TABLE "django_q_schedule" ({", ".join(schedule)})',
        f'CREATE TABLE "django_q_task" ({", ".join(task)})',
        f'CREATE TABLE "django_q_ormq" ({", ".join(queue)})',
    ]


class DjangoQ:
    """django-q's tables in the test database, filled by raw SQL as django-q left them."""

    def __init__(self, q2: bool) -> None:
        self.q2 = q2

    @staticmethod
    def moment(text: str) -> str:
        # Django keeps naive UTC text in SQLite and aware values in PostgreSQL.
        return text if connection.vendor == "sqlite" else f"{text}+00:00"

    @staticmethod
    def _insert(table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(connection.ops.quote_name(c) for c in values)
        marks = ", ".join(["%s"] * len(values))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values())
            )

    def schedule(self, id: int, func: str, **values: Any) -> None:
        row = {"id": id, "func": func, "schedule_type": "O", "repeats": -1,
               "next_run": self.moment("2030-01-01 08:00:00"), **values}  # fmt: skip
        self._insert("django_q_schedule", row)

    def task(self, id: str, **values: Any) -> None:
        row = {"id": id, "name": f"name-{id}", "func": "math.floor", "success": True,
               "attempt_count": 1, "started": self.moment("2024-05-01 10:00:00"),
               "stopped": self.moment("2024-05-01 10:00:02"), **values}  # fmt: skip
        self._insert("django_q_task", row)

    def queued(self) -> None:
        self._insert("django_q_ormq", {"key": "default", "payload": "signed:package"})


@pytest.fixture(params=["django-q", "django-q2"])
def django_q(request) -> Iterator[DjangoQ]:
    """Empty django-q tables in both layouts, dropped after the test."""
    q2 = request.param == "django-q2"
    with connection.cursor() as cursor:
        for statement in _ddl(q2):
            cursor.execute(statement)
    yield DjangoQ(q2)
    with connection.cursor() as cursor:
        for table in ("django_q_schedule", "django_q_task", "django_q_ormq"):
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')


def test_picklefield_values_decode_plain_compressed_and_wrapped(monkeypatch) -> None:
    assert decode_pickled(encoded((1, "a"))) == (1, "a")
    assert decode_pickled(encoded({"x": [1, 2]}, compress=True)) == {"x": [1, 2]}
    assert decode_pickled(wrapped({"model": "instance"}, monkeypatch)) == {"model": "instance"}
    assert decode_pickled(None) is None
    with pytest.raises(ValueError, match="not_a_module"):
        decode_pickled(UNIMPORTABLE)
    with pytest.raises(ValueError, match="not base64"):
        decode_pickled("not base64!")


def test_import_copies_schedules_once_with_q_options_moved_to_their_column(django_q) -> None:
    django_q.schedule(
        1, "math.copysign", name="every-five", schedule_type="I", minutes=5, repeats=-1,
        args="(2, -3)", kwargs="{'q_options': {'timeout': 30, 'broker_name': 'long'}}",
        hook="tests.qdjango.tasks.count_tasks", task="f" * 32, cluster="night",
    )  # fmt: skip
    django_q.schedule(2, "math.floor", schedule_type="C", cron="0 3 * * *", args="2.5")
    django_q.schedule(3, "builtins.print", name="admin-form", kwargs="sep='-', end='!'")
    django_q.schedule(4, "builtins.print", name="not-literal", kwargs="x=datetime.now()")
    django_q.queued()

    out, err = command("qimport_djangoq", "--dry-run")
    assert out.splitlines() == [
        "schedules: 3 would be imported, 0 imported before, 1 skipped",
        "dry run: nothing was written",
    ]
    assert "skipped schedule 4 'not-literal': " in err
    assert not Schedule.objects.exists()
    assert not MetaEntry.objects.exists()

    out, err = command("qimport_djangoq")
    assert out.splitlines() == ["schedules: 3 imported, 0 imported before, 1 skipped"]
    assert "1 task(s) still queued in django_q_ormq are not imported" in err
    every = Schedule.objects.get(name="every-five")
    assert (every.func, every.schedule_type, every.minutes, every.repeats) == (
        "math.copysign", "I", 5, -1,
    )  # fmt: skip
    assert (every.hook, every.task, every.cluster) == (
        "tests.qdjango.tasks.count_tasks", "f" * 32, "night",
    )  # fmt: skip
    assert every.next_run == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert every.q_options == {"timeout": 30}, "django-q's broker name means nothing here"
    engine = EngineSchedule.get(every.pk)
    assert engine is not None
    assert (engine.args, engine.kwargs, engine.q_options) == ((2, -3), {}, {"timeout": 30})
    cron = Schedule.objects.get(func="math.floor")
    assert (cron.cron, cron.name, cron.args) == ("0 3 * * *", None, "2.5")
    admin_form = EngineSchedule.get("admin-form")
    assert admin_form is not None
    assert admin_form.kwargs == {"sep": "-", "end": "!"}

    out, _ = command("qimport_djangoq")
    assert out.splitlines() == ["schedules: 0 imported, 3 imported before, 1 skipped"]
    assert Schedule.objects.count() == 3


def test_import_refuses_a_name_taken_here_and_types_it_lacks(django_q) -> None:
    Schedule(func="math.floor", name="taken", args="1").save()
    django_q.schedule(1, "math.ceil", name="taken")
    if django_q.q2:
        django_q.schedule(2, "math.ceil", name="biweekly", schedule_type="BW")
        django_q.schedule(3, "math.ceil", name="intended", intended_date_kwarg="on")
    out, err = command("qimport_djangoq")
    assert "skipped schedule 1 'taken': a schedule with this name exists here already" in err
    assert Schedule.objects.get(name="taken").func == "math.floor"
    if django_q.q2:
        assert out.splitlines() == ["schedules: 1 imported, 0 imported before, 2 skipped"]
        assert "skipped schedule 2 'biweekly': schedule type 'BW'" in err
        assert "note: schedule 3 'intended': imported without intended_date_kwarg='on'" in err
        assert Schedule.objects.filter(name="intended").exists()


def test_import_tasks_converts_pickled_values_and_runs_once(django_q, monkeypatch) -> None:
    extra = {"cluster": "night"} if django_q.q2 else {}
    ok = "a" * 32
    django_q.task(ok, func="math.copysign", args=encoded((3, -1)), kwargs=encoded({}),
                  result=encoded(-3.0), group="signs", hook="tests.qdjango.tasks.count_tasks",
                  **extra)  # fmt: skip
    django_q.task("b" * 32, success=False, result=encoded("ValueError: bad", compress=True),
                  args=encoded(("x",)), kwargs=encoded({"k": 1}), attempt_count=3)  # fmt: skip
    django_q.task("c" * 32, result=wrapped({"id": 7}, monkeypatch), args=None, kwargs=None)
    django_q.task("d" * 32, result=UNIMPORTABLE)

    out, err = command("qimport_djangoq", "--tasks")
    assert out.splitlines() == [
        "schedules: 0 imported, 0 imported before, 0 skipped",
        "tasks: 3 imported, 0 imported before, 1 skipped",
    ]
    assert f"skipped task {'d' * 32} 'name-{'d' * 32}': result cannot be unpickled here" in err
    task = Task.objects.get(id=ok)
    assert (task.args, task.kwargs, task.result, task.success) == ((3, -1), {}, -3.0, True)
    assert (task.group, task.hook, task.attempt_count) == (
        "signs", "tests.qdjango.tasks.count_tasks", 1,
    )  # fmt: skip
    assert task.cluster == ("night" if django_q.q2 else None)
    assert task.started == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert task.time_taken() == 2
    failed = Task.objects.get(id="b" * 32)
    assert (failed.success, failed.result, failed.attempt_count) == (False, "ValueError: bad", 3)
    assert Task.objects.get(id="c" * 32).result == {"id": 7}

    out, _ = command("qimport_djangoq", "--tasks")
    assert out.splitlines()[1] == "tasks: 0 imported, 3 imported before, 1 skipped"
    assert Task.objects.count() == 3


def test_import_says_which_table_is_missing() -> None:
    with pytest.raises(CommandError, match="no table django_q_schedule"):
        command("qimport_djangoq")
