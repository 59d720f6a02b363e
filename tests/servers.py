"""Servers the tests start themselves, once per session: SQS (moto) and MongoDB.

``QENGINE_TEST_SQS_URL`` / ``QENGINE_TEST_MONGO_URL`` point the tests at a
running server instead. Otherwise each fixture starts its server on a free
loopback port and ends it, by its pid, when the session ends. For MongoDB a
real ``mongod`` on PATH is preferred; without one (none can be installed from
PyPI, npm or Debian 12) the stand-in is SecantusDB's Python server, which
speaks MongoDB's wire protocol over WiredTiger. A server that cannot be had
skips its tests locally and fails them when CI is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import NoReturn

import pytest

STARTUP_S = 60.0
"""Longest a server may take to answer after its start (a cold import of moto takes seconds)."""

SQS_KEYS = {"aws_region": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
"""Region and credentials for the test server; moto accepts any."""


def skip_or_fail(message: str) -> NoReturn:
    """Skip locally; fail when CI is set, where every service must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI is set: the service must run in CI")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process of the session, or a server someone else runs (``process`` None)."""

    url: str
    kind: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start(command: list[str], url: str, kind: str, log: Path, ready: Callable[[], None]) -> Server:
    """Run ``command`` until ``ready()`` stops raising; its output goes to ``log``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = Server(url, kind, process, log)
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            ready()
            return server
        except Exception as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{kind} did not start ({exc}); its output:\n{tail}") from exc
            time.sleep(0.1)


# -- SQS ---------------------------------------------------------------------------


def _sqs_ready(url: str) -> Callable[[], None]:
    def check() -> None:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session(
            region_name=SQS_KEYS["aws_region"],
            aws_access_key_id=SQS_KEYS["aws_access_key_id"],
            aws_secret_access_key=SQS_KEYS["aws_secret_access_key"],
        ).client(
            "sqs",
            endpoint_url=url,
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
        )
        try:
            client.list_queues(MaxResults=1)
        finally:
            client.close()

    return check


@pytest.fixture(scope="session")
def sqs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """moto's SQS server (see tests/sqs_server.py), or the one QENGINE_TEST_SQS_URL names."""
    url = os.environ.get("QENGINE_TEST_SQS_URL")
    if url:
        try:
            _sqs_ready(url)()
        except Exception as exc:
            skip_or_fail(f"SQS at {url} is not reachable ({exc})")
        yield Server(url, "SQS at QENGINE_TEST_SQS_URL")
        return
    if find_spec("boto3") is None or find_spec("moto") is None or find_spec("flask") is None:
        skip_or_fail("boto3 and moto[server] are not installed (pip install -e '.[dev]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    script = Path(__file__).with_name("sqs_server.py")
    log = tmp_path_factory.mktemp("sqs") / "moto.log"
    command = [sys.executable, str(script), "-H", "127.0.0.1", "-p", str(port)]
    try:
        server = start(command, url, "moto's SQS server", log, _sqs_ready(url))
    except RuntimeError as exc:
        skip_or_fail(str(exc))
    yield server
    server.stop()


# -- MongoDB -----------------------------------------------------------------------


def _mongo_ready(url: str) -> Callable[[], None]:
    def check() -> None:
        import pymongo

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=500
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()

    return check


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A MongoDB server: QENGINE_TEST_MONGO_URL, else a real mongod, else SecantusDB's."""
    url = os.environ.get("QENGINE_TEST_MONGO_URL")
    if find_spec("pymongo") is None:
        skip_or_fail("pymongo is not installed (pip install -e '.[dev]')")
    if url:
        try:
            _mongo_ready(url)()
        except Exception as exc:
            skip_or_fail(f"MongoDB at {url} is not reachable ({exc})")
        yield Server(url, "MongoDB at QENGINE_TEST_MONGO_URL")
        return
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}"
    data = tmp_path_factory.mktemp("mongo")
    mongod = shutil.which("mongod")
    if mongod:
        kind = "mongod"
        command = [
            mongod, "--dbpath", str(data), "--port", str(port),
            "--bind_ip", "127.0.0.1", "--nounixsocket",
        ]  # fmt: skip
    elif find_spec("secantus") is not None:
        kind = "SecantusDB (stand-in for mongod)"
        config = data / "secantusd.toml"
        config.write_text("")  # an explicit, empty config: no ./secantusd.toml is read
        command = [
            sys.executable, "-c", "import sys; from secantus.cli import main; sys.exit(main())",
            "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", str(data / "db"), "--log-level", "WARNING",
        ]  # fmt: skip
    else:
        skip_or_fail("no MongoDB server: neither mongod on PATH nor SecantusDB is installed")
    try:
        server = start(command, url, kind, data / "server.log", _mongo_ready(url))
    except RuntimeError as exc:
        skip_or_fail(str(exc))
    yield server
    server.stop()


def closed_port() -> int:
    """A loopback port that refuses connections: bound by us, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping_redis(url: str, timeout: float = 2) -> bool:
    """Whether the Redis at ``url`` answers; the probe's connection is closed either way
    (left to the garbage collector, its socket was warned unclosed at the session's end,
    which the suite's warnings-as-errors turned into a failed run)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout)
    try:
        return bool(client.ping())
    finally:
        client.close()
