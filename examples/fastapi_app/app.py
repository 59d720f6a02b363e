"""A FastAPI app: the engine set up in the lifespan, tasks queued, polled and awaited.

From the repository root, with a cluster running (``PYTHONPATH=. qcluster``)::

    uvicorn examples.fastapi_app.app:app

Endpoints: ``POST /reports`` queues a task; ``GET /tasks/{id}`` polls it;
``GET /tasks/{id}/wait`` waits for it without blocking the event loop;
``GET /health`` is the cluster health check (200/500).

The engine's API is synchronous: it talks to the broker and the store with
blocking calls. Short calls (queue a task, look a result up) go in plain
``def`` endpoints, which FastAPI already runs in its thread pool. A long wait
goes through ``anyio.to_thread.run_sync`` with a limiter of its own (see
``wait_for_task``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import qengine
from examples.fastapi_app import tasks
from qengine.health import health

MAX_WAIT_MS = 30_000
"""Longest wait a request may ask for."""
WAITERS = 20
"""Requests that may wait for a result at once; more queue up for a thread."""


class ReportRequest(BaseModel):
    text: str = Field(min_length=1)
    delay_s: float = Field(default=0.0, ge=0.0, le=5.0)
    """Pretend work, so that waiting can be seen."""


def task_body(task_id: str, task: qengine.Task | None) -> dict[str, Any]:
    """A task's JSON: done or not, and once done its success and result."""
    if task is None:
        # Queued, running, or an id that never existed: the store only knows finished tasks.
        return {"id": task_id, "done": False}
    return {
        "id": task.id,
        "name": task.name,
        "done": True,
        "success": task.success,
        "result": _jsonable(task.result),
        "time_taken_s": task.time_taken(),
    }


def _jsonable(value: Any) -> Any:
    """The value itself when JSON can carry it, else its repr: results can be any Python object."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def create_app(config: qengine.Config | None = None) -> FastAPI:
    """Build the app; its lifespan installs ``config``, or one read from ``QENGINE_*`` variables.

    The configuration is installed at startup rather than at import, so that
    importing the module (uvicorn, tests, tools) has no side effect.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        installed = qengine.configure(config) if config is not None else qengine.configure()
        # The limiter is made here because an anyio limiter belongs to the running event
        # loop. Waits get their own so that they can never take every token of the
        # default thread pool (40), which every sync endpoint also needs.
        yield {"qengine": installed, "waiters": CapacityLimiter(WAITERS)}

    app = FastAPI(title="qengine FastAPI example", lifespan=lifespan)

    @app.post("/reports", status_code=202)
    def queue_report(report: ReportRequest, request: Request, response: Response) -> dict[str, str]:
        # Plain def: async_task writes to the broker with a blocking call, so FastAPI
        # runs this in its thread pool instead of on the event loop.
        task_id = qengine.async_task(tasks.word_stats, report.text, delay_s=report.delay_s)
        location = str(request.url_for("task_status", task_id=task_id))
        response.headers["Location"] = location
        return {"id": task_id, "status_url": location}

    @app.get("/tasks/{task_id}", name="task_status")
    def task_status(task_id: str) -> JSONResponse:
        body = task_body(task_id, qengine.fetch(task_id))
        return JSONResponse(body, status_code=200 if body["done"] else 202)

    @app.get("/tasks/{task_id}/wait")
    async def wait_for_task(
        task_id: str,
        request: Request,
        timeout_ms: Annotated[int, Query(ge=0, le=MAX_WAIT_MS)] = 10_000,
    ) -> JSONResponse:
        # fetch(wait=…) blocks its thread until the result is in (on a notification with
        # Redis, polling otherwise). Called here directly it would stall the event loop and
        # every other request with it, so it runs in a worker thread. The "waiters" limiter
        # bounds how many threads may sit in such waits; starlette's run_in_threadpool would
        # draw from the shared default limiter instead.
        task = await anyio.to_thread.run_sync(
            partial(qengine.fetch, task_id, wait=timeout_ms), limiter=request.state.waiters
        )
        body = task_body(task_id, task)
        return JSONResponse(body, status_code=200 if body["done"] else 202)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        """Answers straight from the event loop: slow when something blocks the loop."""
        return {"pong": True}

    @app.get("/health")
    def cluster_health(request: Request) -> JSONResponse:
        ok, body = health(request.state.qengine)
        return JSONResponse(body, status_code=200 if ok else 500)

    return app


app = create_app()
"""The app uvicorn serves: ``uvicorn examples.fastapi_app.app:app``."""
