"""qdjango tests run under pytest-django with ``tests.qdjango.settings`` (see scripts/test).

The engine's configuration comes from the Django settings here, so the
suite-wide ``fresh_config`` fixture is replaced by one that drops the
current configuration and lets qdjango's loader read the settings again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from qengine import runtime


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the SQLite test database file (the test runner keeps a file it did not name)."""
    import os

    path = os.environ.get("QDJANGO_TEST_DB_FILE")
    if path and os.environ.get("QDJANGO_TEST_DB", "sqlite") == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
