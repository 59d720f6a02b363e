"""Error reporters in a real cluster: the monitor reports failures; a bad reporter stops it."""

from __future__ import annotations

import json

import pytest

from qengine import async_task, fetch, result

pytestmark = pytest.mark.cluster


def test_cluster_reports_each_failed_task_once(embedded, start_cluster, tmp_path):
    reports = tmp_path / "reports.jsonl"
    cluster = start_cluster(error_reporter={"tests.reporters.FileReporter": {"path": str(reports)}})
    failed_id = async_task("tests.tasks.fail", "from the cluster", task_name="doomed")
    ok_id = async_task("tests.tasks.add", 1, 2)
    assert result(ok_id, wait=10_000) == 3
    assert fetch(failed_id, wait=10_000).success is False
    # The monitor reports right after saving, and stopping waits for the monitor.
    assert cluster.stop() == 0
    (line,) = [json.loads(text) for text in reports.read_text().splitlines()]
    assert line == {
        "id": failed_id,
        "name": "doomed",
        "func": "tests.tasks.fail",
        "summary": "ValueError: from the cluster",
        "attempt_count": 1,
    }


def test_cluster_with_an_unknown_reporter_does_not_start(embedded, start_cluster):
    cluster = start_cluster(wait=False, error_reporter={"bugsnag": {}})
    assert cluster.process.wait(30) == 2
    assert "cluster cannot start: error_reporter: unknown reporter 'bugsnag'" in cluster.log()
