"""Markers, service fixtures and per-test isolation for the whole suite.

Services come from QENGINE_TEST_REDIS_URL, QENGINE_TEST_DATABASE_URL (PostgreSQL)
and QENGINE_TEST_MARIADB_URL, defaulting to the loopback servers; SQS and MongoDB
servers are started by the session (tests/servers.py). A missing service skips
its tests locally and fails them when CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

import qengine
import qengine.runtime
from qengine.config import ENV_PREFIX
from qengine.db import Base, get_engine, normalize_url
from tests.servers import mongo_server, ping_redis, sqs_server  # noqa: F401 - session fixtures

REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "QENGINE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "QENGINE_TEST_MARIADB_URL", "mariadb+pymysql://root@127.0.0.1:3306/test"
)
SECRET = "test-secret-key-for-the-suite"

_reachable: dict[str, bool] = {}


def _require(name: str, check) -> None:
    if name not in _reachable:
        try:
            check()
            _reachable[name] = True
        except Exception:
            _reachable[name] = False
    if not _reachable[name]:
        message = f"{name} is not reachable"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI is set: the service must run in CI")
        pytest.skip(message)


@pytest.fixture(autouse=True)
def fresh_config(tmp_path, monkeypatch) -> Iterator[None]:
    """Each test starts on its own embedded default (a SQLite file in tmp_path), no env keys."""
    for var in list(os.environ):
        if var.startswith(ENV_PREFIX) and not var.startswith(ENV_PREFIX + "TEST_"):
            monkeypatch.delenv(var)
    monkeypatch.setattr(qengine.runtime, "_config_file", None)
    qengine.configure(store=f"sqlite:///{tmp_path}/qengine.sqlite3")
    yield
    qengine.runtime.reset()


@pytest.fixture
def redis_url() -> str:
    """The test Redis; every key made under the test's prefix is removed afterwards."""
    _require("Redis", lambda: ping_redis(REDIS_URL))
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cluster_name() -> str:
    """A queue name no other test uses, so tests cannot see each other's packages."""
    return f"t-{uuid.uuid4().hex[:12]}"


def _ping_database(url: str) -> None:
    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    finally:
        engine.dispose()


def _truncate(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(sa.delete(table))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The test PostgreSQL database; the engine's tables are emptied after the test."""

    _require("PostgreSQL", lambda: _ping_database(POSTGRES_URL))
    yield POSTGRES_URL
    _truncate(POSTGRES_URL)


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """The test MariaDB database; the engine's tables are emptied after the test."""

    _require("MariaDB", lambda: _ping_database(MARIADB_URL))
    yield MARIADB_URL
    _truncate(MARIADB_URL)
