"""Redis clients for everything that talks to a Redis: the broker, notifications, cluster
status and the cache, so that each connects, retries and words its failures the same way."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .config import Config
from .errors import BrokerError, BrokerUnavailable, ConfigError, QEngineError

__all__ = [
    "REDIS_SCHEMES",
    "ClientProvider",
    "HotLane",
    "client_setting",
    "close_client",
    "describe_client",
    "is_redis_url",
    "redis_client",
    "redis_errors",
    "register_client_provider",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_redis_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis server (the schemes redis-py's ``from_url`` reads)."""
    return bool(url) and url.startswith(REDIS_SCHEMES)  # type: ignore[union-attr]


def _default_retry() -> Retry:
    """A few quick reconnects: enough to ride out a restart or a stale pooled connection.

    redis-py's own defaults differ between ``Redis(...)`` (ten retries, seconds of
    backoff) and ``from_url`` (none); one policy makes both forms behave alike and
    keeps an unreachable server from stalling ``ping`` for long.
    """
    return Retry(ExponentialBackoff(cap=0.25, base=0.02), 3)


def client_url(config: Config, url: str | None = None) -> str | None:
    """The URL ``redis_client`` connects to, or None when it uses the ``redis`` dict."""
    url = url or (config.broker if is_redis_url(config.broker) else None)
    if url is None and isinstance(config.redis, str):
        url = config.redis
    return url


def client_setting(config: Config) -> str:
    """The configuration key that names the server ``redis_client(config)`` connects to.

    Errors tell the user which key to check; the order is ``redis_client``'s.
    """
    if uses_provided_client(config):
        return "django_redis"
    if is_redis_url(config.broker):
        return "broker"
    return "redis"


ClientProvider = Callable[[str], redis.Redis | None]
"""Returns the client of a named connection it knows (e.g. a django-redis cache), else None."""

_providers: list[ClientProvider] = []


def register_client_provider(provider: ClientProvider) -> None:
    """Let an integration resolve ``django_redis`` names into clients of its own pools.

    The engine cannot import Django, so qdjango registers the function that
    turns a cache alias into that cache's client; sharing its pool keeps a
    project at the number of Redis connections it already budgets for.
    """
    if provider not in _providers:
        _providers.append(provider)


def _provided_client(name: str) -> redis.Redis:
    for provider in _providers:
        client = provider(name)
        if client is not None:
            return client
    raise ConfigError(
        f"config key 'django_redis' has the value {name!r}, but nothing provides that "
        "connection: it names a django-redis cache of a Django project using qdjango"
    )


def uses_provided_client(config: Config, url: str | None = None) -> bool:
    """Whether ``redis_client`` hands out a shared client (one it must not close)."""
    return url is None and bool(config.django_redis)


def redis_client(config: Config, url: str | None = None) -> redis.Redis:
    """A Redis client from ``url``, else the ``django_redis`` connection, else the ``broker``
    URL, else the ``redis`` dict or URI.

    A ``django_redis`` client belongs to its provider's pool: close it, never its pool.
    """
    if uses_provided_client(config, url):
        assert config.django_redis is not None
        return _provided_client(config.django_redis)
    url = client_url(config, url)
    if url:
        return redis.Redis.from_url(url, retry=_default_retry())
    options: dict[str, Any] = {"host": "localhost", "port": 6379, "db": 0}
    if isinstance(config.redis, dict):
        options.update(config.redis)
    # redis-py 3 names kept by the spec's defaults but no longer accepted by redis-py 5+.
    options.pop("charset", None)
    options.pop("errors", None)
    options.setdefault("retry", _default_retry())
    return redis.Redis(**options)


def close_client(client: redis.Redis, *, owned: bool) -> None:
    """Disconnect a client ``redis_client`` made, now rather than when it is collected
    (a replaced configuration); one lent by ``django_redis`` (``owned`` False) belongs to
    the project's cache and stays open."""
    if owned:
        client.close()
        client.connection_pool.disconnect()


SPARE_CONNECTIONS = 8
"""Most connections a ``HotLane`` keeps between calls; more callers at once open their own."""


class HotLane:
    """Small, frequent commands sent on connections of our own, past the client's pool.

    Every ``async_task`` is one XADD, and every finished task one notification
    and one acknowledgement: for commands that small, redis-py's pool
    check-out and check-in (a lock, a health check, telemetry hooks) and its
    retry wrapper cost more than sending and parsing the command (an XADD:
    66 µs of CPU through ``Redis.xadd``, 26 µs here). With hiredis a command
    is packed by ``hiredis.pack_command`` in C, not by redis-py's packer in
    Python (0.4 against 4.5 µs for an XADD; 6-9 µs less a call once the
    socket's share is counted). Connections are made
    from the client's pool's own class and settings and kept in a list
    (``pop`` and ``append`` are atomic, so threads need no lock); each is
    used by one caller at a time and left only once its reply is read, so no
    reply can be left behind for the next caller. Anything out of the ordinary
    goes through the client's own call, with its retry policy, callbacks and
    error handling: a pool of another kind (Sentinel, blocking, client-side
    caching), a connection that fails (a stale one the server closed), a
    script the server does not know yet. Replies are raw, as the client's
    callbacks would leave them for the commands sent here (``XADD``, ``MGET``,
    ``EVALSHA``); a command the client post-processes (``SET`` gives ``True``
    there, ``b"OK"`` here) would answer differently on the fallback.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = client.connection_pool
        self._pool: redis.ConnectionPool | None = (
            pool if type(pool) is redis.ConnectionPool and getattr(pool, "cache", None) is None
            else None
        )  # fmt: skip
        self._spare: list[Any] = []
        self._pid = os.getpid()
        self._pack = _c_packer(pool) if self._pool is not None else None

    def __call__(self, *args: Any) -> Any:
        """Send one command, return its raw reply; raises redis-py's errors, like the client."""
        pool = self._pool
        if pool is None:
            return self.client.execute_command(*args)
        if self._pid != os.getpid():  # a forked child must not share its parent's sockets
            self._spare, self._pid = [], os.getpid()
        try:
            connection = self._spare.pop()
        except IndexError:
            connection = pool.connection_class(**pool.connection_kwargs)
        try:
            if self._pack is None:
                connection.send_command(*args)
            else:
                connection.send_packed_command((self._pack(args),))
            reply = connection.read_response()
        except ResponseError:
            self._keep(connection)  # an error reply was read whole: the connection is fine
            raise
        except RedisError:
            connection.disconnect()
            return self.client.execute_command(*args)
        except BaseException:
            connection.disconnect()  # interrupted mid-reply: never reuse it
            raise
        self._keep(connection)
        return reply

    def script(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """Run a registered ``Script``: by its digest here, through the script object when
        the server does not know it (first use, or after a restart or SCRIPT FLUSH)."""
        try:
            return self("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return script(keys=keys, args=args)

    def _keep(self, connection: Any) -> None:
        if len(self._spare) < SPARE_CONNECTIONS:
            self._spare.append(connection)
        else:
            connection.disconnect()

    def close(self) -> None:
        """Disconnect the kept connections now rather than when they are collected."""
        spare, self._spare = self._spare, []
        for connection in spare:
            connection.disconnect()


def _c_packer(pool: redis.ConnectionPool) -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's packer, where it packs as this pool's connections would; else None.

    hiredis writes text as UTF-8: a client configured with another encoding
    keeps redis-py's own packer, which honours it.
    """
    try:
        import hiredis
    except ImportError:
        return None
    encoding = str(pool.connection_kwargs.get("encoding", "utf-8")).lower().replace("_", "-")
    return hiredis.pack_command if encoding in ("utf-8", "utf8") else None


def describe_pool(pool: redis.ConnectionPool) -> str:
    """A URL for messages naming where ``pool`` connects, its password masked."""
    kwargs = pool.connection_kwargs
    auth = ""
    if kwargs.get("password"):
        auth = f"{kwargs.get('username') or ''}:********@"
    if kwargs.get("path"):
        return f"unix://{auth}{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    host = kwargs.get("host", "localhost")
    return f"{scheme}://{auth}{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def describe_client(client: redis.Redis) -> str:
    """Where ``client`` connects, as a URL for messages, its password masked."""
    return describe_pool(client.connection_pool)


@contextmanager
def redis_errors(
    where: str,
    action: str,
    setting: str | None,
    *,
    unavailable: type[QEngineError] = BrokerUnavailable,
    failed: type[QEngineError] = BrokerError,
) -> Iterator[None]:
    """Raise redis-py's errors in the block as ours, naming the server and what to check.

    The one wording of Redis failures: the broker's, notifications', cluster
    status' and the cache's.

    Args:
        where: the server as a URL, password masked (``describe_client``).
        action: what was being done, to complete "cannot be reached to ...".
        setting: the configuration key that names the server (``client_setting``),
            or None for a connection the caller passed in.
        unavailable: raised when the server cannot be reached (refused, timed out,
            authentication failed).
        failed: raised for any other Redis error.
    """
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        names = f" and that {setting!r} names it" if setting else ""
        raise unavailable(
            f"Redis at {where} cannot be reached to {action}: {_one_line(exc)} "
            f"(check that Redis is running there{names})"
        ) from exc
    except RedisError as exc:
        raise failed(f"Redis at {where} failed to {action}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
