"""The chaos suite's size, services and figures table.

``QENGINE_TEST_CHAOS_TASKS`` sets the tasks per run (default 60: the whole
suite in about two minutes on two cores); ``bench/chaos.py`` makes the long
runs. The suite needs the shared Redis (ledgers), the shared PostgreSQL
(stores) and ``redis-server`` on PATH (private brokers it may kill): missing,
it is skipped locally and fails when CI is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
import redis
import sqlalchemy as sa

from bench.chaos import Figures, Plan, run_scenario, text_table
from tests.chaos.rig import POSTGRES_URL, REDIS_URL
from tests.servers import ping_redis, skip_or_fail

TASKS = int(os.environ.get("QENGINE_TEST_CHAOS_TASKS", "60"))
TIMEOUT_S = 120 + TASKS * 0.1
"""Per test: the suite's 120 s, plus room for the larger runs the variable asks for."""

_figures: list[Figures] = []
_reachable: dict[str, str | None] = {}


def _services() -> str | None:
    """Why the suite cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH"
    try:
        ping_redis(REDIS_URL)
    except redis.RedisError:
        return "the shared Redis is not reachable"
    engine = sa.create_engine(POSTGRES_URL, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.SQLAlchemyError:
        return "PostgreSQL is not reachable"
    finally:
        engine.dispose()
    return None


@pytest.fixture
def chaos(tmp_path) -> Callable[[str, str], Figures]:
    """Run a scenario on a broker at the suite's size; its figures join the summary table."""
    if "services" not in _reachable:
        _reachable["services"] = _services()
    if _reachable["services"]:
        skip_or_fail(_reachable["services"])

    def run(scenario: str, broker: str) -> Figures:
        fig = run_scenario(scenario, broker, Plan.ci(TASKS), tmp_path)
        _figures.append(fig)
        return fig

    return run


def pytest_terminal_summary(terminalreporter) -> None:
    if _figures:
        terminalreporter.section("chaos figures")
        terminalreporter.write_line(text_table(_figures))
