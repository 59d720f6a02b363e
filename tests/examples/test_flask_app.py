"""examples/flask_app and the Flask extension: Flask's test client against a real cluster."""

from __future__ import annotations

import pytest
from flask import Flask

import qengine
from examples.flask_app.app import create_app
from qengine.errors import ConfigError
from qengine.integrations.flask import EXTENSION_KEY, QEngine, app_config, config_keys


def app_settings(config: qengine.Config) -> dict[str, object]:
    """Flask settings giving the app exactly ``config``, in both spellings the extension reads."""
    keys = config.as_dict(masked=False)
    store, secret_key = keys.pop("store"), keys.pop("secret_key")
    return {"QENGINE": keys, "QENGINE_STORE": store, "QENGINE_SECRET_KEY": secret_key}


@pytest.mark.cluster
def test_app_queues_a_task_reports_it_pending_then_done(embedded, start_cluster):
    client = create_app(app_settings(embedded)).test_client()
    assert client.get("/health").status_code == 500, "no cluster yet"

    queued = client.post("/reports", json={"text": "the quick brown fox jumps over the fox"})
    assert queued.status_code == 202
    task_id = queued.json["id"]
    assert queued.headers["Location"] == queued.json["status_url"] == f"/tasks/{task_id}"
    assert client.get(f"/tasks/{task_id}").json == {"id": task_id, "done": False}

    cluster = start_cluster()
    done = client.get(f"/tasks/{task_id}?wait=10000")
    assert done.status_code == 200
    assert done.json["done"] is True
    assert done.json["success"] is True
    assert done.json["result"] == {"words": 8, "characters": 38, "unique": 6}

    healthy = client.get("/health")
    assert healthy.status_code == 200
    assert healthy.json["ok"] is True
    assert [c["pid"] for c in healthy.json["clusters"]] == [cluster.pid]
    assert healthy.json["clusters"][0]["status"] in {"Idle", "Working"}


@pytest.mark.cluster
def test_a_failing_task_is_reported_done_without_success(embedded, start_cluster):
    client = create_app(app_settings(embedded)).test_client()
    start_cluster()
    task_id = qengine.async_task("examples.flask_app.tasks.word_stats", None)
    failed = client.get(f"/tasks/{task_id}?wait=10000")
    assert failed.status_code == 200
    assert failed.json["success"] is False
    assert failed.json["result"].startswith("AttributeError: ")


def test_bad_requests_are_refused_before_anything_is_queued(embedded):
    client = create_app(app_settings(embedded)).test_client()
    assert client.post("/reports", json={}).status_code == 400
    assert client.post("/reports", json={"text": "x", "delay_s": "soon"}).status_code == 400
    assert qengine.queue_size() == 0


# -- the extension -----------------------------------------------------------------------


def test_init_app_reads_both_spellings_the_specific_one_winning(tmp_path):
    app = Flask("factory")
    app.config.update(
        QENGINE={"name": "from-dict", "workers": 3, "store": f"sqlite:///{tmp_path}/a.sqlite3"},
        QENGINE_NAME="from-key",
    )
    ext = QEngine()
    config = ext.init_app(app)
    assert (config.name, config.workers) == ("from-key", 3)
    assert app.extensions[EXTENSION_KEY].config is config
    assert app_config(app) is config
    assert qengine.get_config() is config, "the API uses the app's configuration"


def test_one_extension_serves_every_app_of_a_factory(tmp_path):
    ext = QEngine()
    first, second = Flask("first"), Flask("second")
    first.config["QENGINE_NAME"] = "first"
    second.config["QENGINE_NAME"] = "second"
    ext.init_app(first)
    ext.init_app(second)
    assert app_config(first).name == "first"
    assert app_config(second).name == "second"
    assert qengine.get_config().name == "second", "the app initialised last is installed"


def test_constructor_with_an_app_initialises_it():
    app = Flask("direct")
    app.config["QENGINE_WORKERS"] = 2
    QEngine(app)
    assert app_config(app).workers == 2


def test_environment_counts_but_app_config_wins(monkeypatch):
    monkeypatch.setenv("QENGINE_WORKERS", "5")
    monkeypatch.setenv("QENGINE_NAME", "from-env")
    app = Flask("env")
    app.config["QENGINE_NAME"] = "from-app"
    config = QEngine(app).init_app(app)
    assert (config.name, config.workers) == ("from-app", 5)


def test_unknown_keys_and_bad_values_are_refused_naming_the_entry():
    with pytest.raises(ConfigError, match=r"app.config\['QENGINE_WORKRES'\].*'workers'"):
        config_keys({"QENGINE_WORKRES": 2})
    with pytest.raises(ConfigError, match=r"app.config\['QENGINE'\]\['nmae'\]"):
        config_keys({"QENGINE": {"nmae": "x"}})
    with pytest.raises(ConfigError, match="must be a dict"):
        config_keys({"QENGINE": "redis://"})
    before = qengine.get_config()
    app = Flask("bad")
    app.config["QENGINE_WORKERS"] = 0
    with pytest.raises(ConfigError, match="'workers'"):
        QEngine().init_app(app)
    assert EXTENSION_KEY not in app.extensions
    assert qengine.get_config() is before, "a bad configuration is never installed"


def test_app_config_before_init_app_says_what_is_missing():
    with pytest.raises(RuntimeError, match="init_app"):
        app_config(Flask("bare"))
