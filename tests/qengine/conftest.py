"""Fixtures shared by the engine's unit tests."""

from __future__ import annotations

import pytest

from qengine.config import Config
from qengine.store import ResultStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])  # fmt: skip
def store(request, tmp_path) -> ResultStore:
    """A result store keeping every success, on each database the suite has."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite3"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    return ResultStore(Config(store=url, save_limit=0))
