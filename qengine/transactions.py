"""The seam through which a framework holds back an enqueue until its database transaction commits.

The engine has no transaction of its caller to wait for: plain SQLAlchemy
code commits where it likes, and the engine must not import Django. A
framework that does know (``qdjango.transactions``) registers a commit hook
here; ``async_task(..., on_commit=…)`` hands its enqueue to that hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import ConfigError

__all__ = ["CommitHook", "defer", "set_commit_hook"]


class CommitHook(Protocol):
    """Runs ``callback`` once the current transaction of ``using`` commits.

    It must run ``callback`` at once when no transaction is open and never
    when the transaction rolls back. ``using`` is None for the framework's
    own choice of database, or the name the caller gave as ``on_commit``.
    """

    def __call__(self, callback: Callable[[], None], using: str | None) -> None: ...


_hook: CommitHook | None = None


def set_commit_hook(hook: CommitHook | None) -> CommitHook | None:
    """Install the framework's commit hook (None removes it); return the one it replaces.

    Returning the previous hook lets a test install its own and put the
    framework's back afterwards.
    """
    global _hook
    previous, _hook = _hook, hook
    return previous


def defer(callback: Callable[[], None], on_commit: bool | str) -> None:
    """Hand ``callback`` to the commit hook: ``on_commit`` is True or a database's name.

    Raises:
        ConfigError: no framework registered a commit hook.
    """
    if _hook is None:
        raise ConfigError(
            f"async_task option on_commit={on_commit!r} needs a framework that knows your "
            "transactions: Django with 'qdjango' in INSTALLED_APPS. Plain qengine cannot tell "
            "when your transaction commits; enqueue after your own commit instead."
        )
    _hook(callback, on_commit if isinstance(on_commit, str) else None)
