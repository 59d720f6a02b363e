"""The admin pages (spec 1.11) through Django's test client, as a superuser, in three languages."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.urls import path
from django.utils import timezone
from django.utils.html import escape

import qengine
from qdjango.models import Failure, OrmQ, Schedule, Success, Task

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "/admin/qdjango"
FILE_D_ATTENTE = "file d\N{RIGHT SINGLE QUOTATION MARK}attente"  # French typography

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tasks() -> dict[str, Task]:
    """Two successes in different groups and a failure, saved by the engine (sync mode)."""
    ids = {
        "copysign": qengine.async_task("math.copysign", 2, -2, group="signs", sync=True),
        "sqrt": qengine.async_task("math.sqrt", 16, group="roots", sync=True),
        "failure": qengine.async_task("math.floor", "x", sync=True),
    }
    return {key: Task.objects.get(id=task_id) for key, task_id in ids.items()}


def q_cluster(settings: Any, **changes: Any) -> dict[str, Any]:
    """The test settings' Q_CLUSTER with some keys changed (None removes one)."""
    keys = {**settings.Q_CLUSTER, **changes}
    return {key: value for key, value in keys.items() if value is not None}


def run_once() -> subprocess.CompletedProcess[str]:
    """``manage.py qcluster --run-once`` in a subprocess on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.qdjango.settings"
    return subprocess.run(
        [sys.executable, "-m", "django", "qcluster", "--run-once"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def post_action(client: Client, page: str, action: str, *pks: Any, **extra: str) -> Any:
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    return client.post(f"{ADMIN}/{page}/", data, follow=True)


def schedule_form(**values: str) -> dict[str, str]:
    """What the add/change form posts, with the defaults a person would leave as they are."""
    data = {
        "name": "", "func": "math.copysign", "hook": "", "args": "2, -2", "kwargs": "",
        "cluster": "", "schedule_type": "H", "minutes": "", "cron": "", "repeats": "-1",
        "next_run_0": "", "next_run_1": "", "_save": "Save",
    }  # fmt: skip
    data.update(values)
    return data


# -- index and label ----------------------------------------------------------------------


def test_index_lists_every_page_under_the_label(admin_client: Client, settings: Any) -> None:
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    assert settings.Q_CLUSTER["label"] in html
    for title in ("Successful tasks", "Failed tasks", "Scheduled tasks", "Queued tasks"):
        assert title in html


@pytest.fixture
def relabel() -> Iterator[None]:
    """Put back the section title that a test's ``ready()`` call set from another label."""
    app = apps.get_app_config("qdjango")
    before = app.verbose_name
    yield
    app.verbose_name = before


@pytest.mark.usefixtures("relabel")
def test_label_setting_titles_the_admin_section(admin_client: Client, settings: Any) -> None:
    settings.Q_CLUSTER = q_cluster(settings, label="Nightly jobs")
    apps.get_app_config("qdjango").ready()  # where the label is read
    index = admin_client.get("/admin/").content.decode()
    assert "Nightly jobs" in index
    app_index = admin_client.get(f"{ADMIN}/").content.decode()
    assert "<title>Nightly jobs administration" in app_index


# -- successful and failed tasks --------------------------------------------------------


def test_success_pages_show_the_tasks(admin_client: Client, tasks: dict[str, Task]) -> None:
    listing = admin_client.get(f"{ADMIN}/success/")
    assert listing.status_code == 200
    html = listing.content.decode()
    for column in ("Name", "Function", "Started", "Stopped", "Time taken", "Group"):
        assert f">{column}<" in html
    assert tasks["copysign"].name in html
    assert tasks["sqrt"].name in html
    assert tasks["failure"].name not in html
    detail = admin_client.get(f"{ADMIN}/success/{tasks['sqrt'].pk}/change/")
    assert detail.status_code == 200
    assert "4.0" in detail.content.decode()  # the result
    assert "math.sqrt" in detail.content.decode()


def test_success_search_and_group_filter(admin_client: Client, tasks: dict[str, Task]) -> None:
    found = admin_client.get(f"{ADMIN}/success/", {"q": "sqrt"}).content.decode()
    assert tasks["sqrt"].name in found
    assert tasks["copysign"].name not in found
    grouped = admin_client.get(f"{ADMIN}/success/", {"group": "signs"}).content.decode()
    assert tasks["copysign"].name in grouped
    assert tasks["sqrt"].name not in grouped
    by_group_search = admin_client.get(f"{ADMIN}/success/", {"q": "roots"}).content.decode()
    assert tasks["sqrt"].name in by_group_search


def test_task_pages_are_read_only(admin_client: Client, tasks: dict[str, Task]) -> None:
    assert admin_client.get(f"{ADMIN}/success/add/").status_code == 403
    assert admin_client.get(f"{ADMIN}/failure/add/").status_code == 403
    url = f"{ADMIN}/success/{tasks['sqrt'].pk}/change/"
    assert 'name="_save"' not in admin_client.get(url).content.decode()
    assert admin_client.post(url, {"func": "os.system"}).status_code == 403
    assert Task.objects.get(pk=tasks["sqrt"].pk).func == "math.sqrt"


def test_tasks_can_be_deleted(admin_client: Client, tasks: dict[str, Task]) -> None:
    done = post_action(admin_client, "success", "delete_selected", tasks["sqrt"].pk, post="yes")
    assert done.status_code == 200
    assert not Task.objects.filter(pk=tasks["sqrt"].pk).exists()
    assert Task.objects.filter(pk=tasks["copysign"].pk).exists()


def test_failure_pages_show_the_error(admin_client: Client, tasks: dict[str, Task]) -> None:
    listing = admin_client.get(f"{ADMIN}/failure/").content.decode()
    assert tasks["failure"].name in listing
    assert "must be real number" in listing
    assert tasks["sqrt"].name not in listing
    assert "Resubmit selected tasks to queue" in listing
    detail = admin_client.get(f"{ADMIN}/failure/{tasks['failure'].pk}/change/")
    assert detail.status_code == 200
    assert "<pre>" in detail.content.decode()
    assert "must be real number" in detail.content.decode()
    found = admin_client.get(f"{ADMIN}/failure/", {"q": "floor"}).content.decode()
    assert tasks["failure"].name in found


def test_failure_page_customized_as_the_spec_shows(
    admin_client: Client, tasks: dict[str, Task], settings: Any
) -> None:
    from django.contrib import admin

    from qdjango import admin as q_admin
    from qdjango import models as q_models

    admin.site.unregister([q_models.Failure])
    try:

        @admin.register(q_models.Failure)
        class ChildClassAdmin(q_admin.FailAdmin):
            list_display = ("name", "func", "result", "started", "attempt_count")

        # The loaded URLconf holds the views of the page registered before; a fresh one
        # (as a project gets when it starts) routes to the new page.
        urls = types.ModuleType("customized_admin_urls")
        urls.urlpatterns = [path("admin/", admin.site.urls)]
        settings.ROOT_URLCONF = urls
        html = admin_client.get(f"{ADMIN}/failure/").content.decode()
    finally:
        admin.site.unregister([q_models.Failure])
        admin.site.register(q_models.Failure, q_admin.FailAdmin)
    assert ">Attempts<" in html
    assert tasks["failure"].name in html


# -- resubmitting failures ---------------------------------------------------------------


@pytest.fixture
def missing_file(tmp_path: Path) -> Path:
    """A path whose removal fails now; once the file exists the same task succeeds."""
    return tmp_path / "made-later.txt"


def failed_removal(path: Path) -> Task:
    task_id = qengine.async_task("os.remove", str(path), sync=True)
    failure = Failure.objects.get(id=task_id)
    assert "No such file" in str(failure.result)
    return failure


def test_resubmit_queues_the_failure_on_the_broker(
    admin_client: Client, missing_file: Path
) -> None:
    failure = failed_removal(missing_file)
    assert qengine.queue_size() == 0
    done = post_action(admin_client, "failure", "retry_failed", failure.pk)
    assert "1 failed task was queued again." in done.content.decode()
    assert not Failure.objects.exists()
    assert qengine.queue_size() == 1
    queued = OrmQ.objects.get()
    message = queued.task()
    assert (message.func, message.args) == ("os.remove", (str(missing_file),))


@pytest.mark.cluster
def test_resubmitted_failure_runs_in_a_cluster(admin_client: Client, missing_file: Path) -> None:
    failure = failed_removal(missing_file)
    post_action(admin_client, "failure", "retry_failed", failure.pk)
    missing_file.touch()
    done = run_once()
    assert done.returncode == 0, done.stderr
    assert not missing_file.exists()
    success = Success.objects.get(func="os.remove")
    assert success.args == (str(missing_file),)
    assert not Failure.objects.exists()
    assert not OrmQ.objects.exists()


def test_resubmit_in_sync_mode_runs_at_once(
    admin_client: Client, missing_file: Path, settings: Any
) -> None:
    failure = failed_removal(missing_file)
    missing_file.touch()
    settings.Q_CLUSTER = q_cluster(settings, sync=True)
    post_action(admin_client, "failure", "retry_failed", failure.pk)
    assert not missing_file.exists()
    assert Success.objects.filter(func="os.remove").count() == 1
    assert not Failure.objects.exists()


def test_resubmit_reports_an_unreachable_broker(
    admin_client: Client, missing_file: Path, settings: Any
) -> None:
    failure = failed_removal(missing_file)
    settings.Q_CLUSTER = q_cluster(settings, orm=None, broker="redis://127.0.0.1:9/0")
    done = post_action(admin_client, "failure", "retry_failed", failure.pk)
    assert done.status_code == 200
    assert f"Could not queue task {failure.name} again" in done.content.decode()
    assert Failure.objects.filter(pk=failure.pk).exists()


# -- schedules -------------------------------------------------------------------------


def test_schedule_add_edit_and_delete(admin_client: Client) -> None:
    added = admin_client.post(f"{ADMIN}/schedule/add/", schedule_form(name="signs"))
    assert added.status_code == 302, added.content.decode()
    item = Schedule.objects.get(name="signs")
    assert item.next_run is not None  # empty in the form: first run now
    assert (item.func, item.args, item.schedule_type) == ("math.copysign", "2, -2", "H")
    page = admin_client.get(f"{ADMIN}/schedule/{item.pk}/change/")
    assert page.status_code == 200
    assert "math.copysign" in page.content.decode()
    changed = admin_client.post(
        f"{ADMIN}/schedule/{item.pk}/change/",
        schedule_form(name="signs", schedule_type="C", cron="0 22 * * 1-5", repeats="3"),
    )
    assert changed.status_code == 302, changed.content.decode()
    item.refresh_from_db()
    assert (item.schedule_type, item.cron, item.repeats) == ("C", "0 22 * * 1-5", 3)
    deleted = admin_client.post(f"{ADMIN}/schedule/{item.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"schedule_type": "C", "cron": "not a cron"}, "cron", "cron expression"),
        ({"schedule_type": "I"}, "minutes", "minutes >= 1"),
        ({"func": "nodots"}, "func", "dotted path"),
        ({"args": "(1, "}, "args", "not a literal"),
        ({"kwargs": "x=os"}, "kwargs", "name=value pairs"),
    ],
)
def test_schedule_form_shows_engine_errors_beside_the_field(
    admin_client: Client, values: dict[str, str], field: str, words: str
) -> None:
    page = admin_client.post(f"{ADMIN}/schedule/add/", schedule_form(**values))
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert list(errors) == [field]
    assert words in errors[field][0]
    assert escape(words) in page.content.decode()
    assert "schedule 0" not in page.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (
            {"schedule_type": "C", "cron": "not a cron", "func": "nodots", "minutes": "often",
             "hook": "nodots.", "args": "(1, ", "kwargs": "x=os"},
            {"cron": "is not a valid cron expression", "func": "is not a dotted path",
             "minutes": "Enter a whole number.", "hook": "is not a dotted path",
             "args": "is not a literal", "kwargs": "name=value pairs"},
        ),
        (
            {"schedule_type": "I", "minutes": "0", "func": "nodots", "args": "(1, "},
            {"minutes": "minutes >= 1", "func": "is not a dotted path",
             "args": "is not a literal"},
        ),
    ],
)  # fmt: skip
def test_schedule_form_shows_every_field_error_at_once(
    admin_client: Client, values: dict[str, str], words: dict[str, str]
) -> None:
    page = admin_client.post(f"{ADMIN}/schedule/add/", schedule_form(**values))
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert set(errors) == set(words)
    html = page.content.decode()
    for field, text in words.items():
        assert len(errors[field]) == 1
        assert text in errors[field][0], (field, errors[field])
        assert escape(errors[field][0]) in html
    assert "schedule 0" not in html
    assert not Schedule.objects.exists()


def test_schedule_change_form_names_no_row(admin_client: Client) -> None:
    item = Schedule.objects.create(func="math.floor", args="1.5")
    page = admin_client.post(
        f"{ADMIN}/schedule/{item.pk}/change/", schedule_form(args="(1, ", kwargs="x=os")
    )
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert set(errors) == {"args", "kwargs"}
    assert f"schedule {item.pk}:" not in page.content.decode()
    item.refresh_from_db()
    assert item.args == "1.5"


def test_schedule_error_outside_the_form_is_a_form_error(admin_client: Client) -> None:
    item = Schedule.objects.create(func="math.floor", args="1.5")
    # Written past the model's checks, as another program could.
    Schedule.objects.filter(pk=item.pk).update(q_options={"bogus": 1})
    page = admin_client.post(f"{ADMIN}/schedule/{item.pk}/change/", schedule_form())
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert list(errors) == ["__all__"]
    assert "unknown q_options key" in errors["__all__"][0]


def test_schedule_list_links_the_last_run(admin_client: Client, tasks: dict[str, Task]) -> None:
    ran = Schedule.objects.create(func="math.sqrt", args="16", task=tasks["sqrt"].pk)
    failed = Schedule.objects.create(func="math.floor", args="'x'", task=tasks["failure"].pk)
    Schedule.objects.create(func="math.fabs", args="-1")  # never ran
    pruned = Schedule.objects.create(func="math.ceil", args="1", task="0" * 32)
    html = admin_client.get(f"{ADMIN}/schedule/").content.decode()
    assert f'href="{ADMIN}/success/{tasks["sqrt"].pk}/change/">[{tasks["sqrt"].name}]' in html
    assert f'href="{ADMIN}/failure/{tasks["failure"].pk}/change/">[{tasks["failure"].name}]' in html
    assert 'icon-yes.svg" alt="True"' in html
    assert 'icon-no.svg" alt="False"' in html
    assert html.count('icon-unknown.svg" alt="None"') == 2  # never ran, result pruned
    detail = admin_client.get(f"{ADMIN}/schedule/{ran.pk}/change/").content.decode()
    assert f"[{tasks['sqrt'].name}]" in detail
    assert admin_client.get(f"{ADMIN}/schedule/{failed.pk}/change/").status_code == 200
    gone = admin_client.get(f"{ADMIN}/schedule/{pruned.pk}/change/").content.decode()
    assert '<div class="readonly">-</div>' in gone  # the empty mark, not "None"


def test_schedule_search_and_filters(admin_client: Client) -> None:
    now = timezone.now()
    soon, later = now - timedelta(days=1), now + timedelta(days=400)
    Schedule.objects.create(name="soon", func="math.floor", args="1.5", next_run=soon)
    Schedule.objects.create(
        name="later", func="math.ceil", schedule_type="C", cron="0 22 * * 1-5", next_run=later
    )

    def names(**query: str) -> set[str]:
        page = admin_client.get(f"{ADMIN}/schedule/", query)
        assert page.status_code == 200
        return {item.name for item in page.context["cl"].result_list}

    assert names() == {"soon", "later"}
    assert names(q="ceil") == {"later"}
    assert names(q="soon") == {"soon"}
    assert names(schedule_type__exact="C") == {"later"}
    # The "Past 7 days" link of the next-run filter, as the filter builds it.
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week = {
        "next_run__gte": str(today - timedelta(days=7)),
        "next_run__lt": str(today + timedelta(days=1)),
    }
    assert names(**week) == {"soon"}
    html = admin_client.get(f"{ADMIN}/schedule/").content.decode()
    assert "By Schedule Type" in html
    assert "By Next Run" in html


# -- queued tasks ----------------------------------------------------------------------


def test_queued_tasks_list_and_detail(admin_client: Client) -> None:
    task_id = qengine.async_task("math.copysign", 3, -1, group="queued")
    row = OrmQ.objects.get()
    listing = admin_client.get(f"{ADMIN}/ormq/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert row.name() in html
    assert "math.copysign" in html
    for column in ("Queue", "Locked until", "Deliveries"):
        assert f">{column}<" in html
    detail = admin_client.get(f"{ADMIN}/ormq/{row.pk}/change/").content.decode()
    assert task_id in detail
    assert "queued" in detail
    assert admin_client.get(f"{ADMIN}/ormq/add/").status_code == 403


def test_unreadable_package_does_not_break_the_queue_page(admin_client: Client) -> None:
    OrmQ.objects.create(key="elsewhere", payload=b"not a package")
    html = admin_client.get(f"{ADMIN}/ormq/").content.decode()
    assert "(cannot be read)" in html


def test_queued_tasks_can_be_deleted(admin_client: Client) -> None:
    qengine.async_task("math.copysign", 3, -1)
    qengine.async_task("math.copysign", 4, -1)
    first = OrmQ.objects.order_by("pk").first()
    assert first is not None
    post_action(admin_client, "ormq", "delete_selected", first.pk, post="yes")
    assert qengine.queue_size() == 1
    assert not OrmQ.objects.filter(pk=first.pk).exists()


def test_queued_tasks_page_lists_the_store_queue_without_orm(
    admin_client: Client, settings: Any
) -> None:
    # No broker setting: the SQL broker keeps the queue in the store's database.
    settings.Q_CLUSTER = q_cluster(settings, orm=None)
    qengine.async_task("math.copysign", 3, -1)
    row = OrmQ.objects.get()
    listing = admin_client.get(f"{ADMIN}/ormq/")
    assert listing.status_code == 200
    assert row.name() in listing.content.decode()
    assert not list(listing.context["messages"])


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("en", "Queued tasks are listed here only when the broker keeps them"),
        ("de", "Aufgaben in der Warteschlange werden hier nur aufgeführt"),
        ("fr", f"Les tâches en {FILE_D_ATTENTE} ne sont listées ici que"),
    ],
)
def test_queued_tasks_page_explains_a_broker_outside_the_databases(
    admin_client: Client, settings: Any, language: str, words: str
) -> None:
    OrmQ.objects.create(key="stale", payload=b"left by an earlier orm broker")
    settings.Q_CLUSTER = q_cluster(settings, orm=None, broker="redis://127.0.0.1:9/0")
    index = admin_client.get("/admin/").content.decode()
    assert f'href="{ADMIN}/ormq/"' in index  # listed, as the documentation says
    listing = admin_client.get(f"{ADMIN}/ormq/", HTTP_ACCEPT_LANGUAGE=language)
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 0
    html = listing.content.decode()
    assert escape(words) in html
    assert escape("Q_CLUSTER['orm']") in html
    assert "Redis:" in html or "Redis\N{NO-BREAK SPACE}:" in html  # the broker, named
    assert "left by an earlier" not in html
    assert "delete_selected" not in html


def test_queued_tasks_page_names_a_database_broker_without_its_password(
    admin_client: Client, settings: Any
) -> None:
    settings.Q_CLUSTER = q_cluster(
        settings, orm=None, broker="postgresql://queue:s3cret@db.example:5432/jobs"
    )
    html = admin_client.get(f"{ADMIN}/ormq/").content.decode()
    assert "postgresql://queue:********@db.example:5432/jobs" in html
    assert "s3cret" not in html


# -- languages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("de", ["Erfolgreiche Aufgaben", "Fehlgeschlagene Aufgaben", "Geplante Aufgaben",
                "Aufgaben in der Warteschlange"]),
        ("fr", ["Tâches réussies", "Tâches échouées", "Tâches planifiées",
                f"Tâches en {FILE_D_ATTENTE}"]),
    ],
)  # fmt: skip
def test_index_in_german_and_french(admin_client: Client, language: str, words: list[str]) -> None:
    html = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    for word in words:
        assert word in html


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("de", ["Ausgewählte Aufgaben erneut in die Warteschlange stellen", "Funktion",
                "1 fehlgeschlagene Aufgabe wurde erneut in die Warteschlange gestellt."]),
        ("fr", [f"Remettre les tâches sélectionnées dans la {FILE_D_ATTENTE}", "Fonction",
                f"1 tâche échouée a été remise dans la {FILE_D_ATTENTE}."]),
    ],
)  # fmt: skip
def test_failures_and_resubmit_in_german_and_french(
    admin_client: Client, tasks: dict[str, Task], language: str, words: list[str]
) -> None:
    listing = admin_client.get(f"{ADMIN}/failure/", HTTP_ACCEPT_LANGUAGE=language)
    done = admin_client.post(
        f"{ADMIN}/failure/",
        {"action": "retry_failed", "_selected_action": [tasks["failure"].pk]},
        follow=True,
        HTTP_ACCEPT_LANGUAGE=language,
    )
    html = listing.content.decode() + done.content.decode()
    for word in words:
        assert word in html


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("de", ["Zeitplantyp", "Nächste Ausführung", "Wiederholungen", "Cron-Ausdruck",
                "Leer lassen"]),
        ("fr", ["Type de planification", "Prochaine exécution", "Répétitions",
                "Expression cron", "Laisser vide"]),
    ],
)  # fmt: skip
def test_schedule_form_in_german_and_french(
    admin_client: Client, language: str, words: list[str]
) -> None:
    html = admin_client.get(f"{ADMIN}/schedule/add/", HTTP_ACCEPT_LANGUAGE=language)
    for word in words:
        assert word in html.content.decode()
