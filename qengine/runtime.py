"""The process's current configuration, and the objects each configuration shares.

Modules below this one (brokers, store, signing, cache, notify, reporters, db)
take a ``Config`` and know nothing of a "current" one; modules above it (the
API, chains, schedules, the cluster, the integrations) ask here. One caching
mechanism, ``PerConfig``, keeps every shared object; replacing the
configuration closes and forgets them all, so ``configure()`` always means
fresh connections.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import cache as _cache
from . import lite, reporters, task
from .brokers import broker_class, make_broker
from .brokers.base import Broker
from .config import Config, load_config
from .errors import ConfigError
from .notify import Notifier
from .signing import Signer
from .snapshots import SnapshotStore
from .store import ResultStore, embedded_secret
from .task import Failure, Success, Task

__all__ = [
    "Failure",
    "PerConfig",
    "Success",
    "Task",
    "configure",
    "get_broker",
    "get_cache",
    "get_config",
    "get_notifier",
    "get_reporters",
    "get_signer",
    "get_stats",
    "get_store",
    "new_broker",
    "on_reset",
    "reset",
    "secret_key",
    "set_config_file",
    "set_loader",
]

T = TypeVar("T")

_lock = threading.RLock()
_current: Config | None = None
_loader: Callable[[], Config] | None = None
_config_file: str | None = None
_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` whenever the configuration is replaced (an integration drops its own state)."""
    _reset_hooks.append(hook)
    return hook


class PerConfig(Generic[T]):
    """One object per configuration, built on first use and closed when it is replaced.

    Keyed by identity, not equality: a configuration replaced by an equal one
    still gets fresh connections, as ``configure()`` promises.
    """

    def __init__(
        self, build: Callable[[Config], T], close: Callable[[T], None] | None = None
    ) -> None:
        self._build = build
        self._close = close
        self._made: dict[int, tuple[Config, T]] = {}
        self._lock = threading.Lock()
        on_reset(self.clear)

    def __call__(self, config: Config) -> T:
        with self._lock:
            made = self._made.get(id(config))
            if made is None or made[0] is not config:
                made = (config, self._build(config))
                self._made[id(config)] = made
            return made[1]

    def clear(self) -> None:
        with self._lock:
            dropped = [value for _, value in self._made.values()]
            self._made.clear()
        if self._close is not None:
            for value in dropped:
                self._close(value)


# -- the current configuration ------------------------------------------------


def _replace(config: Config | None) -> None:
    global _current
    with _lock:
        _current = config
        for hook in _reset_hooks:
            hook()
        lite.close_engine_connections(forget=True)


def reset() -> None:
    """Forget the current configuration and everything built for it; the next use reloads it.

    For integrations whose settings changed (Django's ``setting_changed``) and for
    tests: connections are closed, caches and reporters dropped.
    """
    _replace(None)


def configure(config: Config | None = None, **keys: Any) -> Config:
    """Replace the process-wide configuration.

    Keys given here beat the environment and the config file. Connections
    opened for the previous configuration are dropped.
    """
    new = config.replace(**keys) if config is not None else _load(keys)
    _replace(new)
    return new


def _load(overrides: dict[str, Any] | None = None) -> Config:
    return load_config(overrides, config_file=_config_file)


def set_config_file(path: str | os.PathLike[str] | None) -> None:
    """Use this TOML file (``--config-file``) instead of ``QENGINE_CONFIG``."""
    global _config_file
    _config_file = os.fspath(path) if path is not None else None
    reset()


def set_loader(loader: Callable[[], Config] | None) -> None:
    """Build the current configuration with ``loader`` from now on (None: the default).

    A framework integration (qdjango) installs one that reads its settings,
    so that nothing is read before the first use; the current configuration
    is dropped and the loader runs on the next ``get_config()``.
    """
    global _loader
    _loader = loader
    reset()


def get_config() -> Config:
    """The current configuration, loaded (environment, file, framework) on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = _loader() if _loader is not None else _load()
        return _current


# -- what each configuration shares -------------------------------------------

_brokers: PerConfig[Broker] = PerConfig(make_broker, Broker.close)


def get_broker(config: Config | None = None) -> Broker:
    """The broker shared by every caller of ``config`` (default: the current configuration).

    Shared, so repeated ``async_task`` calls reuse its connections; never close it.
    """
    return _brokers(config or get_config())


def new_broker(config: Config | None = None, list_key: str | None = None) -> Broker:
    """A private broker with its own connections, which the caller closes.

    For a thread that blocks on the broker (a cluster's pusher) or a queue other
    than the configuration's (``list_key``).
    """
    return make_broker(config or get_config(), list_key)


_stores: PerConfig[ResultStore] = PerConfig(
    lambda config: ResultStore(config, cache=lambda: get_cache(config))
)


def get_store(config: Config | None = None) -> ResultStore:
    """The result store of ``config`` (default: the current configuration)."""
    return _stores(config or get_config())


def _resolve_secret(config: Config) -> str:
    if config.secret_key:
        return config.secret_key
    local = broker_class(config).embedded_secret_url(config)
    if local is None:
        raise ConfigError(
            "config key 'secret_key' is not set: packages for a networked broker must be "
            "signed with an explicit key (set QENGINE_SECRET_KEY or configure(secret_key=...))"
        )
    # The zero-configuration default: a key kept in the embedded SQLite file.
    return embedded_secret(local, secrets.token_urlsafe(48))


_secrets: PerConfig[str] = PerConfig(_resolve_secret)


def secret_key(config: Config | None = None) -> str:
    """The key that signs ``config``'s packages: configured, or kept in the embedded SQLite file.

    Resolved once per configuration: the embedded key costs a database read.

    Raises:
        ConfigError: no secret key is configured and the broker is not a local SQLite file.
    """
    return _secrets(config or get_config())


_signers: PerConfig[Signer] = PerConfig(
    lambda config: Signer.for_config(config, secret_key(config))
)


def get_signer(config: Config | None = None) -> Signer:
    """The signer of ``config``'s task packages (its keys, cluster name and package settings)."""
    return _signers(config or get_config())


def _notifier(config: Config) -> Notifier | None:
    if not broker_class(config).notifies_results:
        return None
    return Notifier(config, Signer.for_config(config, secret_key(config), purpose="result"))


def _close_notifier(notifier: Notifier | None) -> None:
    if notifier is not None:
        notifier.close()


_notifiers: PerConfig[Notifier | None] = PerConfig(_notifier, _close_notifier)


def get_notifier(config: Config | None = None) -> Notifier | None:
    """The result notifier when the broker offers one, else None (waiters poll the store)."""
    return _notifiers(config or get_config())


_stats: PerConfig[SnapshotStore] = PerConfig(
    lambda config: broker_class(config).status_backend(config), lambda stats: stats.close()
)


def get_stats(config: Config | None = None) -> SnapshotStore:
    """Where clusters publish their status snapshots: the broker's choice."""
    return _stats(config or get_config())


_caches: PerConfig[_cache.ResultCache] = PerConfig(_cache.make_cache, lambda cache: cache.close())


def get_cache(config: Config | None = None) -> _cache.ResultCache:
    """The result cache ``config.cache`` names; by default the broker's choice."""
    return _caches(config or get_config())


_reporters = PerConfig(reporters.build_reporters, reporters.close_reporters)


def get_reporters(config: Config | None = None) -> tuple[tuple[str, reporters.ErrorReporter], ...]:
    """The configured error reporters by name, built on first use.

    Raises:
        ConfigError: a reporter is unknown, its library is missing, or it refused its settings.
    """
    return _reporters(config or get_config())


# The stored Task model reads through the current configuration's store.
task.set_store_locator(get_store)
