"""Error reporters: failed tasks reach Sentry, Rollbar and plugins through their real clients.

Sentry events are caught by a ``sentry_sdk`` transport that keeps envelopes;
Rollbar items are posted by pyrollbar's blocking handler to an HTTP server on
loopback. Tasks run in sync mode, which finishes them through the same
``finish()`` as a cluster's monitor (tests/cluster covers a real cluster).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import qengine
from qengine import ConfigError, async_task, fetch
from qengine.reporters import BUILTIN_REPORTERS, ENTRY_POINT_GROUP, RollbarReporter, SentryReporter
from qengine.runtime import get_reporters

ROOT = Path(__file__).resolve().parents[2]


def use_reporters(**error_reporter: Any) -> qengine.Config:
    """Sync mode with these reporters."""
    return qengine.configure(qengine.get_config(), sync=True, error_reporter=error_reporter)


def the_reporter(name: str) -> Any:
    """The instance that ``finish()`` reports to (reporters are kept per configuration)."""
    return dict(get_reporters(qengine.get_config()))[name]


# -- Sentry ------------------------------------------------------------------------------


class KeepingTransport(Transport):
    """A sentry_sdk transport that keeps envelopes instead of sending them."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [e.get_event() for e in self.envelopes if e.get_event() is not None]


@pytest.fixture
def sentry() -> KeepingTransport:
    transport = KeepingTransport()
    use_reporters(sentry={"transport": transport, "environment": "tests"})
    return transport


def test_failing_task_reaches_sentry_with_its_name_func_and_error(sentry):
    task_id = async_task("tests.tasks.fail", "bad input", task_name="nightly-import")
    (event,) = sentry.events()
    assert event["level"] == "error"
    assert event["environment"] == "tests"
    assert event["message"] == f"task nightly-import [{task_id}] failed: ValueError: bad input"
    assert event["exception"]["values"] == [{"type": "ValueError", "value": "bad input"}]
    assert event["tags"] == {
        "qengine.func": "tests.tasks.fail",
        "qengine.task_name": "nightly-import",
    }
    assert event["fingerprint"] == ["qengine", "tests.tasks.fail", "ValueError"]
    extra = event["extra"]
    assert extra["task_id"] == task_id
    assert extra["attempt_count"] == 1
    assert extra["traceback"].startswith("ValueError: bad input")
    assert "in fail\n    raise ValueError(message)" in extra["traceback"]
    # Arguments may hold secrets: they are not sent.
    assert "args" not in extra


def test_successful_task_is_not_reported(sentry):
    assert qengine.result(async_task("tests.tasks.add", 1, 2)) == 3
    assert sentry.envelopes == []


def test_sentry_client_is_private_and_closed_with_its_configuration(sentry):
    import sentry_sdk

    reporter = the_reporter("sentry")
    assert isinstance(reporter, SentryReporter)
    # The application's global client is left alone.
    assert not sentry_sdk.get_client().is_active()
    qengine.configure(qengine.get_config(), error_reporter={})
    assert reporter.client.transport is None


# -- Rollbar ------------------------------------------------------------------------------


@pytest.fixture
def rollbar_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in Rollbar API on loopback that keeps every item posted to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(
                {
                    "path": self.path,
                    "token": self.headers.get("X-Rollbar-Access-Token"),
                    "item": json.loads(body),
                }
            )
            reply = json.dumps({"err": 0, "result": {"id": None, "uuid": "0" * 32}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            # No keep-alive: the client's pooled socket would outlive the server.
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/1/", received
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_failing_task_reaches_rollbar_with_its_name_func_and_error(rollbar_api):
    endpoint, received = rollbar_api
    use_reporters(
        rollbar={
            "access_token": "test-token",
            "environment": "tests",
            "handler": "blocking",
            "endpoint": endpoint,
        }
    )
    assert isinstance(the_reporter("rollbar"), RollbarReporter)
    task_id = async_task("tests.tasks.fail", "bad input", task_name="nightly-import")
    assert qengine.result(async_task("tests.tasks.add", 1, 2)) == 3
    (post,) = received
    assert post["path"] == "/api/1/item/"
    assert post["token"] == "test-token"
    data = post["item"]["data"]
    assert data["level"] == "error"
    assert data["body"]["message"]["body"] == (
        f"task nightly-import [{task_id}] failed: ValueError: bad input"
    )
    assert data["context"] == "tests.tasks.fail"
    assert data["fingerprint"] == "qengine:tests.tasks.fail:ValueError"
    custom = data["custom"]
    assert custom["task_name"] == "nightly-import"
    assert custom["func"] == "tests.tasks.fail"
    assert custom["attempt_count"] == 1
    assert custom["traceback"].startswith("ValueError: bad input")


def test_rollbar_reporter_installs_no_logging_handler(rollbar_api):
    endpoint, _ = rollbar_api
    root = logging.getLogger()
    before = list(root.handlers)
    use_reporters(
        rollbar={"access_token": "test-token", "handler": "blocking", "endpoint": endpoint}
    )
    get_reporters(qengine.get_config())
    assert root.handlers == before


# -- plugins and robustness ------------------------------------------------------------------


def test_reporter_by_class_path_gets_its_settings_and_every_field():
    use_reporters(**{"tests.reporters.RecordingReporter": {"channel": "#ops"}})
    task_id = async_task("tests.tasks.fail", "bad input", group="nightly")
    reporter = the_reporter("tests.reporters.RecordingReporter")
    assert reporter.settings == {"channel": "#ops"}
    (failure,) = reporter.reports
    assert failure.id == task_id
    assert failure.func == "tests.tasks.fail"
    assert failure.group == "nightly"
    assert failure.attempt_count == 1
    assert failure.summary == "ValueError: bad input"
    assert failure.error_type == "ValueError"
    assert failure.is_timeout is False
    assert failure.started <= failure.stopped


def test_reporter_from_an_installed_entry_point(tmp_path, monkeypatch):
    # A real distribution on sys.path, as `pip install some-plugin` would leave it.
    dist_info = tmp_path / "site" / "qengine_test_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qengine-test-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nrecording = tests.reporters:RecordingReporter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    use_reporters(recording={})
    async_task("tests.tasks.fail")
    assert [f.func for f in the_reporter("recording").reports] == ["tests.tasks.fail"]


def test_raising_reporter_is_logged_and_neither_the_result_nor_other_reporters_suffer(caplog):
    use_reporters(**{"tests.reporters.BrokenReporter": {}, "tests.reporters.RecordingReporter": {}})
    with caplog.at_level(logging.WARNING, logger="qengine.reporters"):
        task_id = async_task("tests.tasks.fail", hook="tests.tasks.record_hook")
    task = fetch(task_id)
    assert task.success is False
    assert task.result.startswith("ValueError: boom")
    assert len(the_reporter("tests.reporters.RecordingReporter").reports) == 1
    (record,) = [r for r in caplog.records if r.name == "qengine.reporters"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"error reporter tests.reporters.BrokenReporter failed to report task "
        f"{task.name} [{task_id}]"
    )
    assert "reporting service unreachable" in caplog.text


def test_reporters_are_built_once_per_configuration_and_closed_on_reset():
    config = use_reporters(**{"tests.reporters.RecordingReporter": {}})
    first = get_reporters(config)
    async_task("tests.tasks.fail")
    async_task("tests.tasks.fail")
    assert get_reporters(config) is first
    ((_, reporter),) = first
    assert len(reporter.reports) == 2
    qengine.configure(config)
    assert reporter.is_closed
    assert get_reporters(qengine.get_config())[0][1] is not reporter


def test_no_reporters_configured_means_nothing_is_built():
    assert get_reporters(qengine.get_config()) == ()


# -- configuration errors ----------------------------------------------------------------


def test_unknown_reporter_is_a_config_error_naming_it_and_the_choices():
    config = qengine.get_config().replace(error_reporter={"bugsnag": {"api_key": "k"}})
    with pytest.raises(
        ConfigError, match=r"unknown reporter 'bugsnag'; allowed: .*rollbar, sentry"
    ):
        get_reporters(config)


@pytest.mark.parametrize(("name", "module"), [("sentry", "sentry_sdk"), ("rollbar", "rollbar")])
def test_missing_library_is_a_config_error_naming_the_extra(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when it is not installed
    config = qengine.get_config().replace(error_reporter={name: {"access_token": "t"}})
    with pytest.raises(
        ConfigError, match=rf"'{name}' cannot be loaded .*pip install qengine\[{name}\]"
    ):
        get_reporters(config)


def test_rejected_settings_name_the_keys_but_never_the_values():
    config = qengine.get_config().replace(
        error_reporter={"sentry": {"dsn": "https://secret-key@sentry.example/1", "colour": "red"}}
    )
    with pytest.raises(ConfigError) as raised:
        get_reporters(config)
    message = str(raised.value)
    assert "rejected the settings ['colour', 'dsn']" in message
    assert "secret-key" not in message


def test_constructor_error_is_a_config_error():
    config = qengine.get_config().replace(
        error_reporter={
            "tests.reporters.RecordingReporter": {},
            "tests.reporters.RefusingReporter": {},
        }
    )
    with pytest.raises(ConfigError, match=r"rejected the settings \[\]: no route to the reporting"):
        get_reporters(config)


def test_class_without_report_method_is_a_config_error():
    config = qengine.get_config().replace(error_reporter={"collections.OrderedDict": {}})
    with pytest.raises(ConfigError, match=r"has no report\(\) method"):
        get_reporters(config)


def test_sync_mode_logs_a_bad_reporter_and_still_saves_the_failure(caplog):
    use_reporters(nope={})
    with caplog.at_level(logging.ERROR, logger="qengine.reporters"):
        task_id = async_task("tests.tasks.fail")
    assert fetch(task_id).success is False
    assert "failed tasks are not reported: error_reporter: unknown reporter 'nope'" in caplog.text


def test_builtin_reporters_match_the_entry_points_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert declared == {name: ref for name, (ref, _) in BUILTIN_REPORTERS.items()}
    extras = project["optional-dependencies"]
    for _, extra in BUILTIN_REPORTERS.values():
        assert extra in extras
