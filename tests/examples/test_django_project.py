"""examples/django_project end to end: migrate, ``qcluster``, ``runserver``, a report and its mail.

This runs in the engine's session (no pytest-django), so everything Django
happens in subprocesses started in the example's folder with its settings;
the test only speaks HTTP to the site and reads its SQLite file.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.examples.conftest import ROOT, wait_until

pytestmark = pytest.mark.cluster

PROJECT = ROOT / "examples" / "django_project"


def project_env(data_dir: Path) -> dict[str, str]:
    """The example's settings, with its database and mail folder in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="mysite.settings",
        REPORTS_DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def manage(tmp_path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``manage.py`` commands in the background; each is stopped by its pid afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"{args[0]}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *args], cwd=PROJECT, env=project_env(tmp_path),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


class Browser:
    """urllib with cookies, so Django's CSRF cookie goes back with the form."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.status, response.read().decode()

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        token = next(c.value for c in self.cookies if c.name == "csrftoken")
        data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": token}).encode()
        with self.opener.open(self.base + path, data=data, timeout=10) as response:
            return response.status, response.read().decode()

    def up(self) -> bool:
        try:
            return self.get("/")[0] == 200
        except (urllib.error.URLError, ConnectionError):
            return False


def query(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(database, timeout=20)) as db:
        return db.execute(sql, params).fetchall()


def test_site_queues_a_report_the_cluster_builds_it_and_the_hook_mails_it(tmp_path, manage):
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"], cwd=PROJECT,
        env=project_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    database = tmp_path / "db.sqlite3"
    assert query(database, "SELECT func, schedule_type FROM q_schedule WHERE name = ?",
                 "delete-old-reports") == [("reports.tasks.delete_old_reports", "H")]  # fmt: skip

    cluster = manage("qcluster")
    port = free_port()
    manage("runserver", f"127.0.0.1:{port}", "--noreload")
    browser = Browser(f"http://127.0.0.1:{port}")
    wait_until(browser.up, timeout_s=30, interval_s=0.1)

    status, page = browser.get("/")
    assert status == 200
    assert "Request a report" in page
    status, body = browser.post("/reports/", {"title": "Q3 figures", "email": "ada@example.com"})
    assert status == 202
    queued = json.loads(body)
    task_id = queued["task_id"]
    assert queued["result_url"] == f"/tasks/{task_id}/"

    def finished() -> dict[str, Any] | None:
        status, body = browser.get(queued["result_url"])
        return json.loads(body) if status == 200 else None

    outcome = wait_until(finished, timeout_s=30, interval_s=0.1)
    assert outcome["success"] is True, outcome
    assert outcome["result"].startswith("<h1>Q3 figures</h1><p>Prepared for ada@example.com")
    assert query(database, "SELECT success, hook FROM q_task WHERE id = ?", task_id) == [
        (1, "reports.tasks.email_report")
    ]

    # The hook queued the mail as a task of its own; the file backend wrote it.
    mail_dir = tmp_path / "sent-mail"

    def written() -> list[str]:
        # The file backend creates the file before it writes: wait for the text.
        if not mail_dir.is_dir():
            return []
        return [text for path in mail_dir.iterdir() if (text := path.read_text())]

    mail = wait_until(written, timeout_s=30)[0]
    assert "Subject: The report you requested: Q3 figures" in mail
    assert "To: ada@example.com" in mail
    assert outcome["result"] in mail

    # The data migration's schedule ran as soon as the cluster started.
    def schedule_task() -> str | None:
        sql = "SELECT task FROM q_schedule WHERE name = ?"
        return query(database, sql, "delete-old-reports")[0][0]

    ran = wait_until(schedule_task, timeout_s=30)
    sql = "SELECT success FROM q_task WHERE id = ?"
    assert wait_until(lambda: query(database, sql, ran)) == [(1,)]

    cluster.send_signal(signal.SIGTERM)
    assert cluster.wait(30) == 0
    assert "has stopped." in (tmp_path / "qcluster.log").read_text()
