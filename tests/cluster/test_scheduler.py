"""The scheduler thread in real clusters: punctual, once per slot across clusters, per cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

import qengine
from qengine import count_group, fetch_group
from qengine.schedules import Schedule, schedule
from tests.cluster.conftest import ROOT, cluster_env
from tests.cluster.test_cluster import wait_until

pytestmark = pytest.mark.cluster


def test_a_due_schedule_starts_within_a_second_of_next_run(embedded, start_cluster):
    start_cluster()
    time.sleep(1)  # let the scheduler settle into its idle rhythm
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    item = schedule("tests.tasks.add", 1, 2, name="punctual", next_run=due)
    tasks = wait_until(lambda: fetch_group("punctual"), timeout=15)
    assert tasks[0].result == 3
    assert (tasks[0].started - due).total_seconds() < 1.0
    assert Schedule.get(item.id) is None, "a ONCE schedule with negative repeats is deleted"


def test_scheduler_false_disables_the_thread(embedded, start_cluster):
    start_cluster(scheduler=False)
    schedule("tests.tasks.add", 1, 2, name="never")
    time.sleep(2)
    assert count_group("never") == 0
    assert Schedule.get("never") is not None


def test_schedule_restricted_to_a_cluster_runs_only_there(embedded, start_cluster):
    schedule("tests.tasks.add", 2, 2, name="only-alpha", cluster="alpha")
    start_cluster(name="beta")
    time.sleep(2)
    assert Schedule.get("only-alpha") is not None, "beta must not run alpha's schedule"
    alpha = qengine.configure(embedded, name="alpha")
    start_cluster()
    wait_until(lambda: Schedule.get("only-alpha") is None, timeout=15)
    assert [t.result for t in fetch_group("only-alpha", wait=5_000, count=1)] == [4]
    assert alpha.name == "alpha"


@pytest.mark.postgres
def test_every_minutes_slot_runs_exactly_once_across_three_clusters(
    postgres_url, start_cluster, tmp_path
):
    qengine.configure(
        store=postgres_url, secret_key="schedules", workers=1, poll=0.05, guard_cycle=0.2,
        name=f"slots-{int(time.time() * 1000) % 1_000_000}",
    )  # fmt: skip
    now = datetime.now(UTC)
    # Ten missed one-minute slots are due at once (catch_up replays each), so three
    # clusters race for every one of them at the same moment.
    item = schedule(
        "tests.tasks.add", 1, 1, name="every-minute", schedule_type=Schedule.MINUTES,
        minutes=1, next_run=now - timedelta(minutes=9, seconds=30),
    )  # fmt: skip
    for _ in range(3):
        start_cluster(wait=False)
    wait_until(lambda: count_group("every-minute") >= 10, timeout=60)
    time.sleep(1.5)
    tasks = fetch_group("every-minute")
    assert len(tasks) == 10
    assert len({t.id for t in tasks}) == 10
    stored = Schedule.get(item.id)
    assert stored.repeats == -11
    assert stored.next_run > now
    assert stored.task in {t.id for t in tasks}


def test_qinfo_counts_schedules_and_lists_clusters(embedded, start_cluster):
    schedule(
        "tests.tasks.add", 1, 1, name="counted", next_run=datetime.now(UTC) + timedelta(days=1)
    )
    cluster = start_cluster()
    wait_until(lambda: qengine.status.Stat.get_all(embedded), timeout=10)
    env = cluster_env(embedded)

    def qinfo(*args: str) -> str:
        code = f"from qengine.cli import qinfo_main; raise SystemExit(qinfo_main({list(args)!r}))"
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip

    out = qinfo()
    assert "Clusters   1" in out
    assert "Schedules  1" in out
    assert qinfo("--ids").split() == [str(cluster.pid)]
    shown = qinfo("--config")
    assert "cluster-tests" not in shown  # the secret key is masked
    assert '"secret_key": "********"' in shown
