"""A server that is down gives our errors, naming it, from every public call and command.

Nothing here stops a shared server: "down" is a loopback port nobody listens
on (bound, then closed), or a throwaway ``redis-server`` of our own, killed
by its pid. A refused connection fails at once, so no test waits on a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import qengine
from qengine import api, errors
from qengine.chains import AsyncTask, Chain, Iter, async_iter
from qengine.health import check_servers
from qengine.status import Stat, summary
from tests.servers import closed_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "never-shown-pw"


@pytest.fixture
def port() -> int:
    return closed_port()


@pytest.fixture
def redis_down(port) -> str:
    """The broker (and so the cache and notifications) is a Redis that is down."""
    qengine.configure(
        broker=f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        secret_key="server-down-test",
        store=qengine.get_config().store,
    )
    return f"127.0.0.1:{port}"


@pytest.fixture
def store_down(port) -> str:
    """The result store (and so the SQL broker and cache) is a PostgreSQL that is down."""
    qengine.configure(
        store=f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/test",
        secret_key="server-down-test",
    )
    return f"127.0.0.1:{port}"


def raised(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(qengine.QEngineError) as info:
        call()
    return info.value


def assert_names_the_server(exc: BaseException, server: str) -> None:
    """Ours, translated from the driver's (``from exc``), one line, naming host:port only."""
    assert type(exc).__module__ == "qengine.errors", repr(exc)
    assert exc.__cause__ is not None
    text = str(exc)
    assert server in text
    assert "check that" in text
    assert PASSWORD not in text
    assert "\n" not in text


# -- the broker's Redis is down ------------------------------------------------------------

WAIT_MS = 100

BROKER_CALLS: dict[str, Callable[[], Any]] = {
    "async_task": lambda: api.async_task("math.floor", 1.5),
    "queue_size": api.queue_size,
    "result with wait": lambda: api.result("some-id", wait=WAIT_MS),
    "fetch with wait": lambda: api.fetch("some-id", wait=WAIT_MS),
    "fetch forever": lambda: api.fetch("some-id", wait=-1),
    "result_group with wait": lambda: api.result_group("g", wait=WAIT_MS),
    "result_group with count": lambda: api.result_group("g", count=2, wait=WAIT_MS),
    "fetch_group with count": lambda: api.fetch_group("g", count=2, wait=WAIT_MS),
    "AsyncTask.result with wait": lambda: _started(AsyncTask("math.floor")).result(wait=WAIT_MS),
    "Chain.result with wait": lambda: _started(Chain([("math.floor", (1,))])).result(WAIT_MS),
    "Stat.get_all": Stat.get_all,
    "Stat.get": lambda: Stat.get("1"),
    "summary": summary,
    "check_servers": check_servers,
}


def _started(composite: Any) -> Any:
    """As if run() had queued it: only its wait is under test."""
    composite.id = composite.group = "some-id"
    composite.started = True
    return composite


@pytest.mark.parametrize("call", BROKER_CALLS.values(), ids=BROKER_CALLS.keys())
def test_broker_calls_raise_broker_unavailable_naming_redis(redis_down, call):
    exc = raised(call)
    assert isinstance(exc, errors.BrokerUnavailable)
    assert isinstance(exc.__cause__, redis.ConnectionError)
    assert_names_the_server(exc, redis_down)
    assert "'broker' names it" in str(exc)


CACHED_CALLS: dict[str, Callable[[], Any]] = {
    "result": lambda: api.result("some-id", cached=True),
    "fetch": lambda: api.fetch("some-id", cached=True),
    "delete_cached": lambda: api.delete_cached("some-id"),
    "count_group": lambda: api.count_group("g", cached=True),
    "fetch_group": lambda: api.fetch_group("g", cached=True),
    "result_group": lambda: api.result_group("g", cached=True),
    "delete_group": lambda: api.delete_group("g", cached=True),
    "Iter.result": lambda: _started(Iter("math.floor", cached=True)).result(),
    "Chain.current": lambda: _started(Chain([("math.floor", (1,))], cached=True)).current(),
    "async_iter": lambda: async_iter("math.floor", [1, 2], cached=True),
}


@pytest.mark.parametrize("call", CACHED_CALLS.values(), ids=CACHED_CALLS.keys())
def test_cached_results_on_a_redis_that_is_down_raise_store_error(redis_down, call):
    # Cached results are results: a cache that is down is a store that is down.
    exc = raised(call)
    assert isinstance(exc, errors.StoreError)
    assert isinstance(exc.__cause__, redis.ConnectionError)
    assert_names_the_server(exc, redis_down)


def test_a_cache_of_its_own_that_is_down_names_the_cache_setting(port):
    qengine.configure(
        cache=f"redis://:{PASSWORD}@127.0.0.1:{port}/0", store=qengine.get_config().store
    )
    exc = raised(lambda: api.result("some-id", cached=True))
    assert isinstance(exc, errors.StoreError)
    assert_names_the_server(exc, f"127.0.0.1:{port}")
    assert "'cache' names it" in str(exc)


def test_result_without_cache_or_wait_needs_only_the_store(redis_down):
    assert api.result("some-id") is None
    assert api.count_group("g") == 0


# -- the store's database is down ----------------------------------------------------------

STORE_CALLS: dict[str, Callable[[], Any]] = {
    "result": lambda: api.result("some-id"),
    "fetch": lambda: api.fetch("some-id"),
    "result with wait": lambda: api.result("some-id", wait=WAIT_MS),
    "result cached": lambda: api.result("some-id", cached=True),
    "delete_cached": lambda: api.delete_cached("some-id"),
    "count_group": lambda: api.count_group("g"),
    "fetch_group": lambda: api.fetch_group("g"),
    "result_group with count": lambda: api.result_group("g", count=1, wait=WAIT_MS),
    "delete_group": lambda: api.delete_group("g"),
    "resubmit": lambda: api.resubmit("some-id"),
    "Stat.get_all": Stat.get_all,
    "summary": summary,
}


@pytest.mark.parametrize("call", STORE_CALLS.values(), ids=STORE_CALLS.keys())
def test_store_calls_raise_store_error_naming_the_database(store_down, call):
    exc = raised(call)
    assert isinstance(exc, errors.StoreError)
    assert_names_the_server(exc, store_down)
    assert "'store' names it" in str(exc)


def test_check_servers_names_the_sql_broker_when_the_database_is_down(store_down):
    exc = raised(check_servers)
    assert isinstance(exc, errors.BrokerUnavailable)
    assert store_down in str(exc)
    assert PASSWORD not in str(exc)


# -- Redis goes down while a caller waits --------------------------------------------------


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free port: ours to kill, unlike the shared one."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not on PATH")
    port = closed_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=0.5) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    "wait",
    [lambda: api.result("some-id", wait=10_000), lambda: api.result_group("g", count=1)],
    ids=["result", "result_group"],
)
def test_a_waiter_whose_redis_dies_gets_broker_unavailable_not_a_cleanup_error(own_redis, wait):
    url, process = own_redis
    qengine.configure(broker=url, secret_key="server-down-test", store=qengine.get_config().store)
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            wait()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)  # blocked on its notification by now
    process.kill()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], errors.BrokerUnavailable), repr(outcome[0])
    assert url.removeprefix("redis://").removesuffix("/0") in str(outcome[0])


# -- commands ------------------------------------------------------------------------------


def run(command: str, *args: str, config: dict[str, str], tmp_path: Path) -> Any:
    """Run an installed command on a config file, as a user would; its completed process."""
    config_file = tmp_path / "qengine.toml"
    config_file.write_text("".join(f'{key} = "{value}"\n' for key, value in config.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QENGINE_")}
    return subprocess.run(
        [str(BIN / command), "--config-file", str(config_file), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def assert_one_line(stderr: str, server: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert server in lines[0]
    assert "check that" in lines[0]
    assert PASSWORD not in lines[0]
    return lines[0]


def redis_config(port: int) -> dict[str, str]:
    return {"broker": f"redis://:{PASSWORD}@127.0.0.1:{port}/0", "secret_key": "k"}


def store_config(port: int) -> dict[str, str]:
    return {
        "store": f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/test",
        "secret_key": "k",
    }


@pytest.mark.parametrize("args", [[], ["--ids"]], ids=["summary", "ids"])
@pytest.mark.parametrize("server", ["redis", "store"])
def test_qinfo_exits_2_with_one_line_naming_the_server(port, tmp_path, args, server):
    config = redis_config(port) if server == "redis" else store_config(port)
    done = run("qinfo", *args, config=config, tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    line = assert_one_line(done.stderr, f"127.0.0.1:{port}")
    assert line.startswith("qinfo: ")


def test_qinfo_config_needs_no_server_and_masks_the_password(port, tmp_path):
    done = run("qinfo", "--config", config=redis_config(port), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"127.0.0.1:{port}" in done.stdout
    assert PASSWORD not in done.stdout
    assert done.stderr == ""


def test_qinfo_reports_a_bad_config_file_in_one_line(tmp_path):
    done = subprocess.run(
        [str(BIN / "qinfo"), "--config-file", str(tmp_path / "missing.toml"), "--config"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"qinfo: config file '{tmp_path / 'missing.toml'}' does not exist"
    ]


@pytest.mark.parametrize("server", ["redis", "store"])
def test_qcluster_refuses_to_start_with_one_line_naming_the_server(port, tmp_path, server):
    config = redis_config(port) if server == "redis" else store_config(port)
    done = run("qcluster", "--run-once", config=config, tmp_path=tmp_path)
    assert done.returncode == 2
    line = assert_one_line(done.stderr, f"127.0.0.1:{port}")
    assert "CRITICAL cluster cannot start: " in line


def test_check_servers_passes_when_every_server_answers():
    assert check_servers() is None  # the embedded default: a SQLite file, always there
