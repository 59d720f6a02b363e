"""examples/plain_script: the script, run as a user would, against a real ``qcluster``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qengine
from qengine.runtime import get_broker
from tests.examples.conftest import ROOT, cluster_env

pytestmark = pytest.mark.cluster

EXPECTED = [
    "square(7) = 49",
    "slow_sum([1, 2, 3]) = 6",
    "divide(1, 0) (success, error) = (False, 'ZeroDivisionError: division by zero')",
    "group plain-script-squares (sorted) = [1, 4, 9, 16, 25]",
    "chain = ['Hello, Ada!', 5]",
    "iter square([1, 2, 3, 4]) = [1, 4, 9, 16]",
]


def run_script(config: qengine.Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.plain_script.run", "--wait-ms", "15000", *args],
        cwd=ROOT,
        env=cluster_env(config),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_script_prints_tasks_group_chain_and_iter_results(embedded, start_cluster):
    start_cluster()
    out = run_script(embedded, "--without-schedule")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[1:] == [*EXPECTED, "all results in"]
    assert "no cluster" not in out.stdout


def test_script_schedule_runs_on_the_cluster(embedded, start_cluster):
    start_cluster()
    out = run_script(embedded)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "schedule plain-script-greeting = ['Hello, schedule!']" in out.stdout.splitlines()


def test_script_says_when_no_cluster_runs_and_that_its_waits_ran_out(embedded):
    out = subprocess.run(
        [sys.executable, "-m", "examples.plain_script.run", "--wait-ms", "50"],
        cwd=ROOT, env=cluster_env(embedded), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "no cluster named 'default' is running yet" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("missing: square(7), ")


@pytest.mark.redis
def test_script_as_a_file_configured_from_its_options_on_redis(
    redis_url, cluster_name, tmp_path, start_cluster
):
    # The README's Redis recipe: the cluster from QENGINE_* variables, the script from options.
    config = qengine.configure(
        name=cluster_name, broker=redis_url, secret_key="plain-script",
        store=f"sqlite:///{tmp_path}/redis-example.sqlite3", workers=2, guard_cycle=0.2,
    )  # fmt: skip
    start_cluster()
    env = cluster_env(config)
    for key in ("QENGINE_BROKER", "QENGINE_SECRET_KEY"):
        del env[key]
    try:
        out = subprocess.run(
            [sys.executable, "examples/plain_script/run.py", "--wait-ms", "15000",
             "--broker", redis_url, "--secret-key", "plain-script", "--without-schedule"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.splitlines()[0].startswith("broker redis://")
        assert out.stdout.splitlines()[1:-1] == EXPECTED
    finally:
        get_broker().delete_queue()
