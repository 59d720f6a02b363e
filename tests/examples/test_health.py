"""The health check (spec 1.15.7): ``health()``, ``http_response()`` and ``qinfo --health``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import qengine
from qengine.cli import qinfo_main
from qengine.health import health, http_response
from qengine.status import Stat
from tests.examples.conftest import ROOT, cluster_env, wait_until

PROBE = "from qengine.cli import qinfo_main; raise SystemExit(qinfo_main(['--health']))"


def publish(config: qengine.Config, cluster_id: str, status: str, host: str = "here") -> Stat:
    stat = Stat(
        cluster_id=cluster_id, name=config.name, host=host, pid=1000, status=status, workers=[1, 2]
    )
    stat.save(config)
    return stat


def test_no_cluster_is_unhealthy_and_says_so():
    ok, body = health()
    assert ok is False
    assert body["total"] == 0
    assert body["clusters"] == []
    assert body["reason"] == "no cluster named 'default' is running"


@pytest.mark.parametrize("status", ["Idle", "Working"])
def test_clusters_that_take_work_are_healthy(status):
    config = qengine.get_config()
    publish(config, "1", "Idle")
    publish(config, "2", status)
    ok, body = health(config)
    assert ok is True
    assert (body["happy"], body["total"]) == (2, 2)
    assert [c["status"] for c in body["clusters"]] == ["Idle", status]
    assert body["clusters"][0]["workers"] == 2
    code, text = http_response(config)
    assert code == 200
    assert _without_uptime(json.loads(text)) == _without_uptime(body)


def _without_uptime(body: dict) -> dict:
    """The health body less the uptimes, which move on between two reads of a busy machine."""
    return {**body, "clusters": [{**c, "uptime_s": None} for c in body["clusters"]]}


@pytest.mark.parametrize("status", ["Starting", "Stopping", "Stopped"])
def test_one_cluster_not_taking_work_makes_the_whole_unhealthy(status):
    config = qengine.get_config()
    publish(config, "1", "Working")
    publish(config, "2", status)
    ok, body = health(config)
    assert ok is False
    assert body["reason"] == "1 of 2 cluster(s) are Idle or Working"
    assert http_response(config)[0] == 500


def test_only_clusters_of_the_configured_name_count():
    publish(qengine.get_config().replace(name="other"), "1", "Idle")
    assert health()[0] is False


def test_host_limits_the_check_to_that_machines_clusters():
    config = qengine.get_config()
    publish(config, "1", "Idle", host="here")
    publish(config, "2", "Stopping", host="elsewhere")
    assert health(config)[0] is False
    ok, body = health(config, host="here")
    assert ok is True
    assert [c["cluster_id"] for c in body["clusters"]] == ["1"]
    assert health(config, host="nowhere")[1]["reason"] == (
        "no cluster named 'default' is running on nowhere"
    )
    assert http_response(config, host="here")[0] == 200


def test_an_unreachable_status_source_is_unhealthy_not_an_exception():
    config = qengine.get_config().replace(broker="redis://127.0.0.1:1/0", secret_key="k")
    ok, body = health(config)
    assert ok is False
    assert body["error"].startswith("cannot read the clusters' status: ")


def test_qinfo_health_prints_the_body_and_exits_0_or_1(capsys):
    assert qinfo_main(["--health"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    publish(qengine.get_config(), "1", "Idle")
    assert qinfo_main(["--health"]) == 0
    assert json.loads(capsys.readouterr().out)["clusters"][0]["cluster_id"] == "1"


@pytest.mark.cluster
def test_qinfo_health_as_a_probe_follows_a_real_cluster(embedded, start_cluster):
    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PROBE], cwd=ROOT, env=cluster_env(embedded),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert probe().returncode == 1
    cluster = start_cluster()
    healthy = probe()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["clusters"][0]["pid"] == cluster.pid
    assert cluster.stop() == 0
    wait_until(lambda: probe().returncode == 1)
