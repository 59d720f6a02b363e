"""A Flask app that queues a task, reports its status and result, and answers a health check.

From the repository root, with a cluster running (``PYTHONPATH=. qcluster``)::

    flask --app examples.flask_app.app run

Endpoints: ``POST /reports`` queues a task, ``GET /tasks/<id>`` returns its
status and result, ``GET /health`` is the cluster health check (200/500).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import Flask, request, url_for

import qengine
from examples.flask_app import tasks
from qengine.health import health
from qengine.integrations.flask import QEngine, app_config

MAX_WAIT_MS = 10_000
"""Longest ``?wait=`` a request may ask for: a waiting request holds a server thread."""
MAX_DELAY_S = 5.0

# Created once, bound to each app by create_app: the application factory pattern.
qe = QEngine()


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``settings`` go to ``app.config`` (engine keys: ``QENGINE_*``, ``QENGINE``).

    Without settings the engine runs on the embedded default, a SQLite file
    in the working directory, which ``qcluster`` started there shares.
    """
    app = Flask(__name__)
    app.config.from_mapping(settings or {})
    qe.init_app(app)

    @app.post("/reports")
    def queue_report() -> tuple[dict[str, Any], int, dict[str, str]]:
        data = request.get_json(silent=True) or {}
        text = data.get("text")
        if not isinstance(text, str) or not text:
            return {"error": "send JSON with a non-empty 'text'"}, 400, {}
        try:
            delay_s = min(max(float(data.get("delay_s", 0)), 0.0), MAX_DELAY_S)
        except (TypeError, ValueError):
            return {"error": "'delay_s' must be a number of seconds"}, 400, {}
        # Passing the function (not a string) keeps a rename from breaking the path silently.
        task_id = qengine.async_task(tasks.word_stats, text, delay_s=delay_s)
        location = url_for("task_status", task_id=task_id)
        return {"id": task_id, "status_url": location}, 202, {"Location": location}

    @app.get("/tasks/<task_id>")
    def task_status(task_id: str) -> tuple[dict[str, Any], int]:
        # ?wait=ms blocks this request (and its server thread) until the task is done.
        wait_ms = max(0, min(request.args.get("wait", 0, type=int), MAX_WAIT_MS))
        task = qengine.fetch(task_id, wait=wait_ms)
        if task is None:
            # Queued, running, or an id that never existed: the store only knows finished tasks.
            return {"id": task_id, "done": False}, 202
        return {
            "id": task.id,
            "name": task.name,
            "done": True,
            "success": task.success,
            "result": _jsonable(task.result),
            "time_taken_s": task.time_taken(),
        }, 200

    @app.get("/health")
    def cluster_health() -> tuple[dict[str, Any], int]:
        # The app's own configuration: the clusters that serve this app's queue.
        ok, body = health(app_config(app))
        return body, 200 if ok else 500

    return app


def _jsonable(value: Any) -> Any:
    """The value itself when JSON can carry it, else its repr: results can be any Python object."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
