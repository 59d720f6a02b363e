"""The validated configuration: every key's type, default and check.

Sources, strongest first: ``configure(**keys)``, environment variables
``QENGINE_<KEY>``, a TOML file (``QENGINE_CONFIG`` or ``--config-file``),
then the defaults below. This module and ``qdjango.conf`` are the only
readers of the environment and of configuration files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import re
import tomllib
import types
import warnings
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError
from .task import NAME_LENGTH, storable

__all__ = ["DEFAULT_STORE", "Config", "ConfigWarning", "load_config", "mask_url"]

DEFAULT_STORE = "sqlite:///qengine.sqlite3"
ENV_PREFIX = "QENGINE_"

MAX_INT = 2**31 - 1
"""Largest number any key takes (counts, bytes, seconds): a signed 32-bit value, which the
SQL integer columns, the interval timers and the cache expiries all accept. Beyond it a
value would pass here and break far from where it was set."""


# -- the checks, one per key (each key's field names its check) ---------------------


def shown(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for an error message: cut to ``limit`` characters, and never raising.

    The value is the caller's bad input: its ``__repr__`` may fail, and an int of more
    than 4300 digits refuses ``repr`` with a ValueError that would hide the real error.
    """
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object whose repr() fails>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key!r} has the invalid value {shown(value)}: {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT


def _is_number(value: Any) -> bool:
    # The comparison also refuses NaN and the infinities.
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= MAX_INT


def is_timeout(value: Any) -> bool:
    """Whether ``value`` is a timeout (config key and ``async_task`` option): None or seconds."""
    return value is None or (_is_number(value) and value > 0)


def is_cached(value: Any) -> bool:
    """Whether ``value`` is a ``cached`` setting (config key and option): a bool or seconds."""
    return isinstance(value, bool) or (_is_int(value) and value >= 1)


def _splits(url: str) -> bool:
    """Whether ``urlsplit`` can read ``url`` (it refuses a stray bracket, say)."""
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True


_AT_MOST = f"(at most {MAX_INT})"

Check = Callable[[str, Any], None]
"""A key's check: ``check(key, value)`` raises ``ConfigError`` naming the key and what is
allowed."""


def _must(allowed_when: Callable[[Any], bool], allowed: str) -> Check:
    def check(key: str, value: Any) -> None:
        if not allowed_when(value):
            raise _fail(key, value, allowed)

    return check


def _bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(key, value, "True or False")


def _int_at_least(low: int, note: str = "", unit: str = "an integer") -> Check:
    allowed = " ".join(filter(None, [f"{unit} >= {low}", note, _AT_MOST]))
    return _must(lambda value: _is_int(value) and value >= low, allowed)


_positive_int = _int_at_least(1)
_check_recycle = _int_at_least(0, "(0: never recycle)")
_check_max_attempts = _int_at_least(0, "(0: no limit)")
_check_cpu_affinity = _int_at_least(0, "(0: no pinning)")
_check_max_package_size = _int_at_least(1024, unit="a number of bytes")


def _none_or_int_at_least_1(none_means: str, unit: str = "an integer") -> Check:
    return _must(
        lambda value: value is None or (_is_int(value) and value >= 1),
        f"None{none_means} or {unit} >= 1 {_AT_MOST}",
    )


_check_max_rss = _none_or_int_at_least_1("", "a number of kilobytes")
QUEUE_PER_WORKER = 32
"""Tasks held per worker by default: enough that each hand-off carries a batch."""


def default_queue_limit(workers: int) -> int:
    """``queue_limit`` when none is given: 32 per worker, never below Django Q's ``workers ** 2``.

    Django Q's ``workers ** 2`` (4 for 2 workers) keeps so few tasks in flight
    that the cluster waits on round trips instead of running tasks: a backlog
    drained at a fifth of the rate 64 allow (bench/NOTES.md). It is a ceiling:
    the cluster holds fewer when its tasks are slow (``Holdings.target``), so
    clusters sharing a queue share slow tasks. The cost of holding more is on
    failure only: a cluster killed without a chance to hand back its tasks
    leaves them leased until ``retry`` runs out.
    """
    return max(workers**2, QUEUE_PER_WORKER * workers)


_check_queue_limit = _none_or_int_at_least_1(" (32 per worker, at least workers ** 2)")
_check_bulk = _none_or_int_at_least_1(" (as many as queue_limit leaves room for)")
_check_timeout = _must(is_timeout, f"None or a number of seconds > 0 {_AT_MOST}")
_check_cached = _must(is_cached, f"True, False or a number of seconds >= 1 {_AT_MOST}")
_check_label = _must(lambda value: isinstance(value, str), "a string")
_seconds_above_zero = _must(
    lambda value: _is_number(value) and value > 0, f"a number of seconds > 0 {_AT_MOST}"
)
_check_save_limit = _must(
    lambda value: _is_int(value) and value >= -1,
    f"-1 (none), 0 (all) or a positive integer {_AT_MOST}",
)
_check_guard_cycle = _must(
    lambda value: _is_number(value) and 0 < value < 60, "a number of seconds in (0, 60)"
)
_optional_text = _must(
    lambda value: value is None or (isinstance(value, str) and bool(value)),
    "None or a non-empty string",
)


def _check_name(key: str, value: Any) -> None:
    # The name is stored with each task.
    if not isinstance(value, str) or not value or not storable(value, NAME_LENGTH):
        raise _fail(
            key, value, f"a non-empty string of at most {NAME_LENGTH} characters, without NUL"
        )


def _check_redis(key: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict | str):
        raise _fail(key, value, "a dict of redis-py arguments or a redis:// URI")
    if isinstance(value, str) and (
        not _splits(value) or urlsplit(value).scheme not in {"redis", "rediss", "unix"}
    ):
        raise _fail(key, value, "a URI starting with redis://, rediss:// or unix://")
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        raise ConfigError("config key 'redis' must be a dict of redis-py keyword arguments")


def _check_broker_class(key: str, value: Any) -> None:
    _optional_text(key, value)
    if value is not None and "." not in value:
        raise _fail(key, value, "a dotted path such as 'myapp.brokers.MyBroker'")


def _check_broker(key: str, value: Any) -> None:
    _optional_text(key, value)
    if value is not None and ("://" not in value or not _splits(value)):
        raise _fail(key, value, "a URL: redis://…, rediss://…, unix://… or a SQLAlchemy URL")


def _check_store(key: str, value: Any) -> None:
    if not isinstance(value, str) or "://" not in value or not _splits(value):
        raise _fail(key, value, "a SQLAlchemy URL such as sqlite:///qengine.sqlite3")


CACHE_CHOICES = ("store", "memory")
"""The ``cache`` names the engine itself serves, besides redis:// URLs."""

_cache_names: list[Callable[[str], bool]] = []


def register_cache_names(known: Callable[[str], bool]) -> None:
    """Let an integration accept ``cache`` names of its own (qdjango: the project's caches).

    Checked when a configuration is made, so a misspelt name fails at once, not at
    the first cached result.
    """
    if known not in _cache_names:
        _cache_names.append(known)


def _check_cache(key: str, value: Any) -> None:
    _optional_text(key, value)
    if (
        value is None
        or value in CACHE_CHOICES
        or (value.startswith(("redis://", "rediss://", "unix://")) and _splits(value))
        or any(known(value) for known in _cache_names)
    ):
        return
    extra = " or a cache alias of the Django project" if _cache_names else ""
    raise _fail(key, value, f"None, a redis:// URL, 'store' or 'memory'{extra}")


def _check_reporters(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _fail(key, value, "a dict of reporter name to settings")
    for name, settings in value.items():  # the plugins check their settings later
        if not isinstance(name, str) or not name or not isinstance(settings, dict | None):
            raise ConfigError(
                "config key 'error_reporter' must map reporter names to dicts of settings; "
                f"{name!r} maps to {type(settings).__name__}"
            )  # not the settings themselves: they hold tokens


def _check_secret_key(key: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError("config key 'secret_key' must be a non-empty string or None")


def _check_fallbacks(key: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise ConfigError(
            "config key 'secret_key_fallbacks' must be a list of old secret keys, "
            f"not a {type(value).__name__}"
        )  # the message names the type, never the value: it holds keys
    if not all(isinstance(old, str) and old for old in value):
        raise ConfigError(
            "config key 'secret_key_fallbacks' must hold only non-empty strings (old secret keys)"
        )


def _check_time_zone(key: str, value: Any) -> None:
    zone_error = _fail(key, value, "an IANA zone name such as 'Europe/Paris'")
    if not isinstance(value, str):
        raise zone_error
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise zone_error from exc


SQS_KEYS = ("aws_region", "region_name", "aws_access_key_id", "aws_secret_access_key",
            "aws_session_token", "profile_name", "endpoint_url")  # fmt: skip
"""What the ``sqs`` dict may hold: boto3 session arguments (aws_region as the spec spells
region_name) and the endpoint of an SQS-compatible server."""


def _check_sqs(key: str, sqs: Any) -> None:
    """Messages name the offending entry, never the dict's values: they hold credentials."""
    if sqs is None:
        return
    if not isinstance(sqs, dict):
        raise ConfigError(
            f"config key 'sqs' must be a dict such as {{'aws_region': 'us-east-1'}}, "
            f"not {type(sqs).__name__}"
        )
    for entry, value in sqs.items():
        if entry not in SQS_KEYS:
            allowed = ", ".join(SQS_KEYS)
            raise ConfigError(
                f"config key 'sqs' has the unknown entry {entry!r}; allowed: {allowed}"
            )
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config key 'sqs' entry {entry!r} must be a non-empty string")
    if "aws_region" in sqs and "region_name" in sqs:
        raise ConfigError("config key 'sqs' has both 'aws_region' and 'region_name': keep one")
    if ("aws_access_key_id" in sqs) != ("aws_secret_access_key" in sqs):
        raise ConfigError(
            "config key 'sqs' needs 'aws_access_key_id' and 'aws_secret_access_key' "
            "together (or neither, for boto3's own credential chain)"
        )
    endpoint = sqs.get("endpoint_url")
    if endpoint is not None and (
        not _splits(endpoint) or urlsplit(endpoint).scheme not in {"http", "https"}
    ):
        raise _fail("sqs", {"endpoint_url": endpoint}, "endpoint_url must be an http(s):// URL")


def _check_mongo(key: str, mongo: Any) -> None:
    if mongo is None:
        return
    if isinstance(mongo, str):
        if not mongo.startswith(("mongodb://", "mongodb+srv://")):
            raise _fail(
                "mongo",
                _mask_mongo(mongo),
                "a URI starting with mongodb:// or mongodb+srv://, or a dict of "
                "MongoClient arguments",
            )
    elif not isinstance(mongo, dict) or not all(isinstance(k, str) for k in mongo):
        raise ConfigError(
            "config key 'mongo' must be a dict of MongoClient arguments or a mongodb:// URI, "
            f"not {type(mongo).__name__}"
        )


_MONGO_DB_FORBIDDEN = set('/\\. "$\0')


def _check_mongo_db(key: str, value: Any) -> None:
    if value is not None and (
        not isinstance(value, str) or not 0 < len(value) < 64 or _MONGO_DB_FORBIDDEN & set(value)
    ):
        raise _fail(
            key,
            value,
            'None or a MongoDB database name: 1 to 63 characters, none of / \\ . space " $',
        )


def _check_broker_choice(c: Config) -> None:
    """No two keys choose the broker (a custom broker may read any of them)."""
    if c.broker_class:
        return
    chosen = [key for key in ("sqs", "mongo") if getattr(c, key) is not None]
    chosen += [key for key in ("orm", "broker") if getattr(c, key)][:1]
    if len(chosen) > 1:
        raise ConfigError(
            f"config keys {chosen[0]!r} and {chosen[1]!r} both choose the broker: set only one"
        )


def _key(
    default: Any = dataclasses.MISSING,
    check: Check | None = None,
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    secret: bool = False,
) -> Any:
    """A configuration key: its default and its check, in one place (the type is the field's).

    ``secret`` keeps the value out of ``repr`` (and so out of logs and tracebacks).
    """
    assert check is not None
    return field(
        default=default, default_factory=factory, repr=not secret, metadata={"check": check}
    )


class ConfigWarning(UserWarning):
    """A configuration that works but probably does not do what was meant."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every setting of an engine: cluster, broker, store and task defaults.

    Build one with ``load_config`` or ``configure``; the constructor checks
    every value and raises ``ConfigError`` naming the key and what is allowed.
    """

    name: str = _key("default", _check_name)
    """Cluster name: the queue name on the broker and the salt of package signatures."""
    workers: int = _key(factory=lambda: os.cpu_count() or 1, check=_positive_int)
    """Worker processes in the pool (default: CPU count)."""
    daemonize_workers: bool = _key(True, _bool)
    """Kept for compatibility: pool workers always end with their cluster (see README)."""
    recycle: int = _key(500, _check_recycle)
    """Tasks a worker process runs before it is replaced; 0 never replaces it."""
    max_rss: int | None = _key(None, _check_max_rss)
    """Resident memory in kilobytes above which a worker is retired; None: no limit."""
    timeout: float | None = _key(None, _check_timeout)
    """Seconds a task may run before it is stopped; None: no limit. Overridable per task."""
    ack_failures: bool = _key(False, _bool)
    """Acknowledge failed tasks too, so the broker does not deliver them again."""
    max_attempts: int = _key(0, _check_max_attempts)
    """Deliveries of one task before it is given up; 0: no limit."""
    retry: float = _key(60, _seconds_above_zero)
    """Seconds an unacknowledged package stays leased before it is delivered again."""
    compress: bool = _key(False, _bool)
    """Compress packages with zstandard."""
    save_limit: int = _key(250, _check_save_limit)
    """Successes kept in the store: 0 all, -1 none, n the newest n. Failures are always kept."""
    guard_cycle: float = _key(0.5, _check_guard_cycle)
    """Seconds between two rounds of the guard; in (0, 60)."""
    sync: bool = _key(False, _bool)
    """Run every task inline in the caller, as a worker would (for tests)."""
    queue_limit: int | None = _key(None, _check_queue_limit)
    """Most tasks one cluster holds waiting for a worker or running (fewer when tasks are
    slow: ``Holdings.target``); None: ``default_queue_limit``."""
    label: str = _key("Django Q", _check_label)
    """Title of the admin section."""
    catch_up: bool = _key(True, _bool)
    """Replay every schedule slot missed while no cluster ran (False: run once, then move on)."""
    redis: dict[str, Any] | str | None = _key(None, _check_redis)
    """Redis connection for broker and cache: redis-py keyword arguments or a redis:// URI."""
    django_redis: str | None = _key(None, _optional_text)
    """Name of a django-redis cache whose connection pool to reuse (qdjango only)."""
    orm: str | None = _key(None, _optional_text)
    """Django database alias used as the broker (qdjango only)."""
    broker_class: str | None = _key(None, _check_broker_class)
    """Dotted path of a Broker subclass to use instead of the built-in ones."""
    sqs: dict[str, Any] | None = _key(None, _check_sqs, secret=True)
    """Amazon SQS as the broker: aws_region, aws_access_key_id, aws_secret_access_key,
    endpoint_url…; ``{}`` takes region and credentials from boto3's own chain."""
    mongo: dict[str, Any] | str | None = _key(None, _check_mongo, secret=True)
    """MongoDB as the broker: MongoClient keyword arguments, or a mongodb:// URI."""
    mongo_db: str | None = _key(None, _check_mongo_db)
    """Database of the MongoDB broker; None: the URI's database, else 'django-q'."""
    bulk: int | None = _key(None, _check_bulk)
    """Most packages taken from the broker per receive; None: as many as queue_limit has
    room for, so a busy cluster fills its room in one round trip."""
    poll: float = _key(0.2, _seconds_above_zero)
    """Longest pause of a polling broker (SQL) on an empty queue; shorter just after work."""
    cache: str | None = _key(None, _check_cache)
    """Where cached results live: a redis:// URL, 'store', 'memory' or a Django cache alias.

    None picks the broker's Redis when the broker is Redis, else the store.
    """
    cached: bool | int = _key(False, _check_cached)
    """Default for ``cached=``: True keeps results in the cache, n keeps them n seconds."""
    scheduler: bool = _key(True, _bool)
    """Run the scheduler thread in clusters."""
    error_reporter: dict[str, Any] = _key(factory=dict, check=_check_reporters, secret=True)
    """Error reporter plugins and their settings, by name."""
    cpu_affinity: int = _key(0, _check_cpu_affinity)
    """Processors each worker is pinned to (Linux); 0 leaves workers unpinned."""
    broker: str | None = _key(None, _check_broker)
    """Broker URL: redis://, rediss://, unix:// or a SQLAlchemy URL; None: the store's database."""
    store: str = _key(DEFAULT_STORE, _check_store)
    """SQLAlchemy URL of the result store."""
    secret_key: str | None = _key(None, _check_secret_key, secret=True)
    """Key that signs packages; required for any broker but a local SQLite file."""
    secret_key_fallbacks: tuple[str, ...] = _key((), _check_fallbacks, secret=True)
    """Old keys that still verify packages, never sign them: a key rotation under way.

    A list or tuple of strings, kept as a tuple. Environment: a JSON list, or keys
    separated by commas.
    """
    max_package_size: int = _key(16 * 1024 * 1024, _check_max_package_size)
    """Largest package, in bytes, that may be enqueued."""
    time_zone: str = _key("UTC", _check_time_zone)
    """Zone in which daily and longer schedules and cron expressions are computed."""

    def __post_init__(self) -> None:
        for key in dataclasses.fields(self):
            key.metadata["check"](key.name, getattr(self, key.name))
        _check_broker_choice(self)
        object.__setattr__(self, "secret_key_fallbacks", tuple(self.secret_key_fallbacks))
        if self.queue_limit is None:
            object.__setattr__(self, "queue_limit", default_queue_limit(self.workers))
        if self.timeout is not None and self.timeout >= self.retry:
            warnings.warn(
                f"timeout ({self.timeout}s) is not below retry ({self.retry}s): a task still "
                "running when its lease ends could be delivered again; make retry larger",
                ConfigWarning,
                stacklevel=4,
            )
        if self.sqs is not None and self.bulk is not None and self.bulk > 10:
            warnings.warn(
                f"bulk ({self.bulk}) is over 10, the most SQS delivers at once: "
                "the SQS broker takes 10 at a time",
                ConfigWarning,
                stacklevel=4,
            )

    # -- derived values -------------------------------------------------

    @property
    def receive_count(self) -> int:
        """Packages one receive asks for: ``bulk``, else as many as ``queue_limit`` holds."""
        return self.bulk or self.queue_limit or 1

    @property
    def broker_url(self) -> str:
        """The broker's URL: ``broker``, else the ``redis`` URI, else the store's database."""
        if self.broker:
            return self.broker
        if isinstance(self.redis, str):
            return self.redis
        if isinstance(self.redis, dict):
            return "redis://"
        return self.store

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def replace(self, **changes: Any) -> Config:
        """A copy with some keys changed, validated like any other."""
        _check_keys(changes, "replace()")
        return dataclasses.replace(self, **changes)

    def as_dict(self, *, masked: bool = True) -> dict[str, Any]:
        """Every key and value; with ``masked`` secrets and URL passwords hidden."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        # A list, as TOML and JSON write it: this dict is printed and turned into environments.
        out["secret_key_fallbacks"] = list(self.secret_key_fallbacks)
        if masked:
            if out["secret_key"]:
                out["secret_key"] = "********"
            out["secret_key_fallbacks"] = ["********"] * len(self.secret_key_fallbacks)
            for key in ("broker", "store", "cache"):
                if isinstance(out[key], str):
                    out[key] = mask_url(out[key])
            if isinstance(out["redis"], str):
                out["redis"] = mask_url(out["redis"])
            elif isinstance(out["redis"], dict) and out["redis"].get("password"):
                out["redis"] = {**out["redis"], "password": "********"}
            if isinstance(out["sqs"], dict) and out["sqs"].get("aws_secret_access_key"):
                out["sqs"] = {**out["sqs"], "aws_secret_access_key": "********"}
            out["mongo"] = _mask_mongo(out["mongo"])
            # Reporter settings are mostly credentials (DSNs, tokens): show only their keys.
            out["error_reporter"] = {
                name: dict.fromkeys(settings, "********")
                if isinstance(settings, dict)
                else "********"
                for name, settings in out["error_reporter"].items()
            }
        return out


KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config))

# Spec keys we deliberately do not implement, with the reason given to the user.
UNSUPPORTED: dict[str, str] = {
    "disque_nodes": "Disque is discontinued; plug a broker in with broker_class instead",
    "disque_auth": "Disque is discontinued; plug a broker in with broker_class instead",
    "iron_mq": "IronMQ is not supported; plug a broker in with broker_class instead",
    "has_replica": "not needed: the SQL broker always reads from the database it writes to",
}


def _check_keys(keys: Mapping[str, Any], source: str) -> None:
    for key in keys:
        if key in KEYS:
            continue
        if key in UNSUPPORTED:
            raise ConfigError(f"config key {key!r} ({source}) is not supported: {UNSUPPORTED[key]}")
        near = difflib.get_close_matches(key, KEYS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown config key {key!r} ({source}){hint}")


def _mask_mongo(value: Any) -> Any:
    """The ``mongo`` key with the password of its URI or dict hidden.

    MongoDB URIs may list several hosts (``h1:1,h2:2``), which ``mask_url`` cannot parse.
    """
    if isinstance(value, str):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1********@", value)
    if isinstance(value, dict):
        masked = {**value}
        if masked.get("password"):
            masked["password"] = "********"
        if isinstance(masked.get("host"), str):
            masked["host"] = _mask_mongo(masked["host"])
        return masked
    return value


def mask_url(url: str) -> str:
    """``url`` with any password replaced by asterisks, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    # Split the netloc by hand: MongoDB URLs list several hosts, which urlsplit's
    # port parsing refuses.
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:********@{hosts}"))


# -- parsing strings (environment): derived from each key's type ----------------

_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _parse_fallbacks(var: str, text: str) -> Any:
    """Old keys from the environment: a JSON list, or keys separated by commas."""
    if not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return json.loads(text)
    except ValueError as exc:  # the message must not show the value: it holds keys
        raise ConfigError(
            f"environment variable {var} cannot be read as secret_key_fallbacks: "
            "give a JSON list of strings, or keys separated by commas"
        ) from exc


def _reader(kind: Any) -> Callable[[str, str], Any]:
    """How an environment string becomes a value of the key's type ``kind``.

    A union tries its members in the order the field names them (``bool | int``:
    "true" and "1" are True, "5" is 5); None takes "", "none" and "null"; a dict
    is JSON (beside ``str`` only when the text starts with "{"); strings are kept
    as given. The constructor then checks the value like any other.
    """
    members = get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    optional = type(None) in members
    members = tuple(m for m in members if m is not type(None))
    with_text = str in members

    def read(var: str, raw: str) -> Any:
        text = raw.strip()
        if optional and text.lower() in {"", "none", "null"}:
            return None
        for member in members:
            origin = get_origin(member) or member
            if origin is bool and text.lower() in _BOOLS:
                return _BOOLS[text.lower()]
            if origin is int:
                with contextlib.suppress(ValueError):
                    return int(text)
            if origin is float:
                with contextlib.suppress(ValueError):
                    number = float(text)
                    return int(number) if number.is_integer() else number
            if origin is dict and (not with_text or text.startswith("{")):
                with contextlib.suppress(ValueError):
                    return json.loads(text)
            if origin is tuple:
                return _parse_fallbacks(var, text)  # its errors must not show the value
            if origin is str:
                return raw
        raise ConfigError(f"environment variable {var}={raw!r} cannot be read as {var[8:].lower()}")

    return read


_READERS = {key: _reader(kind) for key, kind in get_type_hints(Config).items() if key in KEYS}


def _parse_env(key: str, raw: str) -> Any:
    """Turn an environment string into the key's type; the constructor then validates it."""
    return _READERS[key](ENV_PREFIX + key.upper(), raw)


# -- loading ------------------------------------------------------------------


def _read_file(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from exc
    _check_keys(data, f"config file {path}")
    return data


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the built-in defaults, ``defaults``, the TOML file, the environment and
    ``overrides``, strongest last.

    ``defaults`` are a framework's own answers to some keys (qdjango: Django's
    ``TIME_ZONE`` for ``time_zone``): better than the built-in ones for its
    users, yet still below anything the user set for the engine itself.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    if defaults:
        _check_keys(defaults, "load_config(defaults=)")
        merged.update(defaults)
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        merged.update(_read_file(path))
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key.startswith("test_"):
            continue  # QENGINE_TEST_* belong to the test suite, not to the engine
        _check_keys({key: None}, f"environment variable {var}")
        merged[key] = _parse_env(key, raw)
    if overrides:
        _check_keys(overrides, "configure()")
        merged.update(overrides)
    return Config(**merged)
