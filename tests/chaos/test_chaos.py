"""The delivery promise under faults, on Redis and PostgreSQL, checked against the tasks' ledger.

Each test runs one scenario of ``bench/chaos.py`` at a small size and
asserts what the engine promises there: nothing enqueued is lost, each task
has its result stored once, duplicates only where a crash or an expired
lease allows them, each schedule slot fires once, and a SIGTERM drains.
One test proves the checker can fail: Redis without persistence loses a
backlog, and the loss must show.
"""

from __future__ import annotations

import pytest

from bench.chaos import BROKERS, Figures, promises, text_table
from tests.chaos.conftest import TIMEOUT_S

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.cluster,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.timeout(TIMEOUT_S),
]

brokers = pytest.mark.parametrize("broker", BROKERS)


def assert_kept(fig: Figures) -> None:
    """Every promise of the scenario held (``promises`` is the one list of them)."""
    assert promises(fig) == [], text_table([fig])


def assert_delivered(fig: Figures) -> None:
    assert fig.enqueued > 0, text_table([fig])
    assert fig.lost == 0, text_table([fig])
    assert fig.missing_results == 0, text_table([fig])
    assert fig.failed_results == 0, text_table([fig])
    assert fig.stored >= fig.enqueued, text_table([fig])
    assert_kept(fig)


@brokers
def test_baseline_runs_every_task_once_and_stores_it(chaos, broker):
    fig = chaos("baseline", broker)
    assert_delivered(fig)
    assert fig.duplicates == 0
    assert fig.executions == fig.enqueued == fig.stored


@brokers
def test_workers_killed_at_random_lose_nothing(chaos, broker):
    fig = chaos("worker-kill", broker)
    assert_delivered(fig)
    assert fig.faults >= 1, "no worker was killed while work was waiting"


@brokers
def test_cluster_killed_and_restarted_loses_nothing(chaos, broker):
    fig = chaos("cluster-kill", broker)
    assert_delivered(fig)


@brokers
def test_broker_restarts_and_cuts_lose_nothing(chaos, broker):
    fig = chaos("broker-restart", broker)
    assert_delivered(fig)


def test_redis_without_persistence_loses_the_backlog_and_the_checker_says_so(chaos):
    fig = chaos("redis-nopersist", "redis")
    assert fig.lost > 0, text_table([fig])
    assert_kept(fig)  # and every task queued after the restart ran


@brokers
def test_store_outage_loses_no_result(chaos, broker):
    fig = chaos("store-outage", broker)
    assert_delivered(fig)
    assert fig.faults == 2, "the outage, and a worker killed in it"
    assert None not in fig.recover_s


@brokers
def test_task_that_kills_its_worker_is_given_up_after_max_attempts(chaos, broker):
    fig = chaos("suicide", broker)
    assert_delivered(fig)  # the suicides' failures are their promise, not counted there


@brokers
def test_every_schedule_slot_fires_once_across_three_clusters_with_kills(chaos, broker):
    fig = chaos("schedules", broker)
    assert fig.lost == 0, text_table([fig])
    assert fig.missing_results == 0, text_table([fig])
    assert_kept(fig)


@brokers
def test_sigterm_under_load_drains_cleanly(chaos, broker):
    fig = chaos("sigterm", broker)
    assert_delivered(fig)
    assert fig.duplicates == 0
