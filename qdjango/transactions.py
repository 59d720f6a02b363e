"""Django's side of ``async_task(..., on_commit=…)``: the engine's commit hook, on Django's.

The engine cannot import Django, so it cannot see an ``atomic`` block;
``register()`` (called from ``QDjangoConfig.ready()``) gives it this hook.
Going through ``transaction.on_commit`` rather than watching commits
ourselves is what makes the enqueue run at once outside a transaction,
never on rollback, after the outermost block of nested ones, and under
``TestCase.captureOnCommitCallbacks`` in a project's tests.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections, transaction

from qengine import transactions
from qengine.errors import ConfigError

from . import conf

__all__ = ["on_commit", "register"]


def on_commit(callback: Callable[[], None], using: str | None) -> None:
    """Run ``callback`` when the transaction of the database ``using`` commits.

    Without a name the database is the one that holds qdjango's tables
    (``conf.store_alias()``): with the ``orm`` broker or a Django store,
    that is also the transaction the task's own rows would be written in.

    Raises:
        ConfigError: ``using`` is not an alias of ``DATABASES``.
    """
    alias = using or conf.store_alias()
    if alias not in connections.settings:
        raise ConfigError(
            f"async_task option on_commit={using!r} names no Django database; "
            f"DATABASES has {', '.join(sorted(connections.settings))} (or pass True)"
        )
    transaction.on_commit(callback, using=alias)


def register() -> None:
    """Make ``on_commit`` the engine's commit hook in this process."""
    transactions.set_commit_hook(on_commit)
