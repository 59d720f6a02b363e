"""Under Django too, a server that is down gives our errors and one line from the commands.

"Down" is a loopback port nobody listens on (bound, then closed); the shared
servers are never touched. The commands run as subprocesses on settings
written for the test: the test database, or Redis, moved to that port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from qengine import api
from qengine.errors import StoreError
from tests.servers import closed_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "never-shown-pw"

SETTINGS = f'''
import os

from tests.qdjango.settings import *  # noqa: F403
from tests.qdjango.settings import Q_CLUSTER

_port = os.environ["QDJANGO_DOWN_PORT"]
if os.environ["QDJANGO_DOWN"] == "database":
    DATABASES = {{
        "default": {{
            "ENGINE": "django.db.backends.postgresql", "NAME": "test", "USER": "postgres",
            "PASSWORD": "{PASSWORD}", "HOST": "127.0.0.1", "PORT": _port,
        }}
    }}
else:
    Q_CLUSTER = {{k: v for k, v in Q_CLUSTER.items() if k != "orm"}}
    Q_CLUSTER["broker"] = f"redis://:{PASSWORD}@127.0.0.1:{{_port}}/0"
'''


@pytest.fixture
def port() -> int:
    return closed_port()


def manage(tmp_path: Path, down: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m django`` with ``down`` ("database" or "redis") on a closed port."""
    (tmp_path / "down_settings.py").write_text(SETTINGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    env.update(
        DJANGO_SETTINGS_MODULE="down_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        QDJANGO_DOWN=down,
        QDJANGO_DOWN_PORT=str(port),
    )
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def the_line(done: subprocess.CompletedProcess[str], port: int) -> str:
    """stderr's single line, naming the server and what to check, no password."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "check that" in lines[0]
    assert PASSWORD not in lines[0]
    return lines[0]


@pytest.mark.parametrize("args", [["qinfo"], ["qinfo", "--ids"]], ids=["summary", "ids"])
@pytest.mark.parametrize("down", ["database", "redis"])
def test_qinfo_exits_1_with_one_line_naming_the_server(tmp_path, port, down, args):
    done = manage(tmp_path, down, port, *args)
    assert done.returncode == 1
    assert done.stdout == ""
    line = the_line(done, port)
    assert line.startswith("CommandError: ")
    assert ("Django database 'default'" if down == "database" else "Redis at") in line


@pytest.mark.parametrize("down", ["database", "redis"])
def test_qinfo_config_needs_no_server(tmp_path, port, down):
    done = manage(tmp_path, down, port, "qinfo", "--config")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout


@pytest.mark.parametrize("down", ["database", "redis"])
def test_qcluster_refuses_to_start_with_one_line_naming_the_server(tmp_path, port, down):
    done = manage(tmp_path, down, port, "qcluster", "--run-once")
    assert done.returncode == 1
    assert the_line(done, port).startswith("CommandError: cluster cannot start: ")


@pytest.mark.parametrize(
    "backend", ["django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache"]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda: api.result("some-id", cached=True),
        lambda: api.delete_cached("some-id"),
        lambda: api.count_group("g", cached=True),
    ],
    ids=["result", "delete_cached", "count_group"],
)
def test_a_django_cache_that_is_down_raises_store_error_naming_it(port, backend, call):
    caches = {
        **settings.CACHES,
        "down": {"BACKEND": backend, "LOCATION": f"redis://:{PASSWORD}@127.0.0.1:{port}/0"},
    }
    q_cluster = {**settings.Q_CLUSTER, "cache": "down"}
    with override_settings(CACHES=caches, Q_CLUSTER=q_cluster), pytest.raises(StoreError) as info:
        call()
    text = str(info.value)
    assert text.startswith(f"Django cache 'down' ({backend} at redis://:********@127.0.0.1:{port}")
    assert "check that its server is running and that CACHES['down'] names it" in text
    assert PASSWORD not in text
    assert info.value.__cause__ is not None
