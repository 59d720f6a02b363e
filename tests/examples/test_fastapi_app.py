"""examples/fastapi_app: Starlette's test client (lifespan included) against a real cluster."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

import qengine
from examples.fastapi_app.app import create_app


@pytest.mark.cluster
def test_lifespan_installs_the_config_and_the_app_queues_polls_and_waits(embedded, start_cluster):
    qengine.configure(name="not-this-one")
    with TestClient(create_app(embedded)) as client:
        assert qengine.get_config().name == embedded.name, "installed at startup"
        assert client.get("/health").status_code == 500, "no cluster yet"

        queued = client.post("/reports", json={"text": "one two two"})
        assert queued.status_code == 202
        task_id = queued.json()["id"]
        assert queued.headers["location"] == queued.json()["status_url"]
        assert queued.json()["status_url"].endswith(f"/tasks/{task_id}")
        polled = client.get(f"/tasks/{task_id}")
        assert (polled.status_code, polled.json()) == (202, {"id": task_id, "done": False})

        cluster = start_cluster()
        waited = client.get(f"/tasks/{task_id}/wait", params={"timeout_ms": 10_000})
        assert waited.status_code == 200
        assert waited.json()["result"] == {"words": 3, "characters": 11, "unique": 2}
        assert client.get(f"/tasks/{task_id}").json()["success"] is True

        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["clusters"][0]["pid"] == cluster.pid


@pytest.mark.cluster
def test_a_wait_leaves_the_event_loop_free_for_other_requests(embedded, start_cluster):
    start_cluster()
    with TestClient(create_app(embedded)) as client, ThreadPoolExecutor(1) as pool:
        task_id = client.post("/reports", json={"text": "slow", "delay_s": 1.5}).json()["id"]
        began = time.monotonic()
        waiting = pool.submit(client.get, f"/tasks/{task_id}/wait", params={"timeout_ms": 10_000})
        time.sleep(0.3)  # the wait is in progress now
        assert client.get("/ping").json() == {"pong": True}
        assert time.monotonic() - began < 1.0, "/ping answered while the wait went on"
        assert not waiting.done()
        assert waiting.result(timeout=15).json()["result"]["words"] == 1


def test_a_wait_that_runs_out_answers_not_done_and_bad_input_is_refused(embedded):
    with TestClient(create_app(embedded)) as client:
        missing = client.get("/tasks/no-such-task/wait", params={"timeout_ms": 50})
        assert (missing.status_code, missing.json()["done"]) == (202, False)
        assert client.get("/tasks/x/wait", params={"timeout_ms": 10**6}).status_code == 422
        assert client.post("/reports", json={"text": ""}).status_code == 422
        assert client.post("/reports", json={"text": "x", "delay_s": 60}).status_code == 422
        assert qengine.queue_size() == 0
