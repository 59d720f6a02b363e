"""The validated configuration: every key's type, default and check.

Sources, strongest first: ``configure(**keys)``, environment variables
``QENGINE_<KEY>``, a TOML file (``QENGINE_CONFIG`` or ``--config-file``),
then the defaults below. This module and ``qdjango.conf`` are the only
readers of the environment and of configuration files.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
import warnings
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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


class ConfigWarning(UserWarning):
    """A configuration that works but probably does not do what was meant."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every setting of an engine: cluster, broker, store and task defaults.

    Build one with ``load_config`` or ``configure``; the constructor checks
    every value and raises ``ConfigError`` naming the key and what is allowed.
    """

    name: str = "default"
    """Cluster name: the queue name on the broker and the salt of package signatures."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Worker processes in the pool (default: CPU count)."""
    daemonize_workers: bool = True
    """Kept for compatibility: pool workers always end with their cluster (see README)."""
    recycle: int = 500
    """Tasks a worker process runs before it is replaced; 0 never replaces it."""
    max_rss: int | None = None
    """Resident memory in kilobytes above which a worker is retired; None: no limit."""
    timeout: float | None = None
    """Seconds a task may run before it is stopped; None: no limit. Overridable per task."""
    ack_failures: bool = False
    """Acknowledge failed tasks too, so the broker does not deliver them again."""
    max_attempts: int = 0
    """Deliveries of one task before it is given up; 0: no limit."""
    retry: float = 60
    """Seconds an unacknowledged package stays leased before it is delivered again."""
    compress: bool = False
    """Compress packages with zstandard."""
    save_limit: int = 250
    """Successes kept in the store: 0 all, -1 none, n the newest n. Failures are always kept."""
    guard_cycle: float = 0.5
    """Seconds between two rounds of the guard; in (0, 60)."""
    sync: bool = False
    """Run every task inline in the caller, as a worker would (for tests)."""
    queue_limit: int | None = None
    """Tasks one cluster holds in memory; None means workers ** 2."""
    label: str = "Django Q"
    """Title of the admin section."""
    catch_up: bool = True
    """Replay every schedule slot missed while no cluster ran (False: run once, then move on)."""
    redis: dict[str, Any] | str | None = None
    """Redis connection for broker and cache: redis-py keyword arguments or a redis:// URI."""
    django_redis: str | None = None
    """Name of a django-redis cache whose connection pool to reuse (qdjango only)."""
    orm: str | None = None
    """Django database alias used as the broker (qdjango only)."""
    broker_class: str | None = None
    """Dotted path of a Broker subclass to use instead of the built-in ones."""
    sqs: dict[str, Any] | None = field(default=None, repr=False)
    """Amazon SQS as the broker: aws_region, aws_access_key_id, aws_secret_access_key,
    endpoint_url…; ``{}`` takes region and credentials from boto3's own chain."""
    mongo: dict[str, Any] | str | None = field(default=None, repr=False)
    """MongoDB as the broker: MongoClient keyword arguments, or a mongodb:// URI."""
    mongo_db: str | None = None
    """Database of the MongoDB broker; None: the URI's database, else 'django-q'."""
    bulk: int = 1
    """Packages taken from the broker per dequeue call."""
    poll: float = 0.2
    """Seconds a polling broker (SQL) sleeps when the queue is empty."""
    cache: str | None = None
    """Where cached results live: a redis:// URL, 'store', 'memory' or a Django cache alias.

    None picks the broker's Redis when the broker is Redis, else the store.
    """
    cached: bool | int = False
    """Default for ``cached=``: True keeps results in the cache, n keeps them n seconds."""
    scheduler: bool = True
    """Run the scheduler thread in clusters."""
    error_reporter: dict[str, Any] = field(default_factory=dict, repr=False)
    """Error reporter plugins and their settings, by name."""
    cpu_affinity: int = 0
    """Processors each worker is pinned to (Linux); 0 leaves workers unpinned."""
    broker: str | None = None
    """Broker URL: redis://, rediss://, unix:// or a SQLAlchemy URL; None: the store's database."""
    store: str = DEFAULT_STORE
    """SQLAlchemy URL of the result store."""
    secret_key: str | None = field(default=None, repr=False)
    """Key that signs packages; required for any broker but a local SQLite file."""
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    """Old keys that still verify packages, never sign them: a key rotation under way.

    A list or tuple of strings, kept as a tuple. Environment: a JSON list, or keys
    separated by commas.
    """
    max_package_size: int = 16 * 1024 * 1024
    """Largest package, in bytes, that may be enqueued."""
    time_zone: str = "UTC"
    """Zone in which daily and longer schedules and cron expressions are computed."""

    def __post_init__(self) -> None:
        _validate(self)
        object.__setattr__(self, "secret_key_fallbacks", tuple(self.secret_key_fallbacks))
        if self.queue_limit is None:
            object.__setattr__(self, "queue_limit", self.workers**2)
        if self.timeout is not None and self.timeout >= self.retry:
            warnings.warn(
                f"timeout ({self.timeout}s) is not below retry ({self.retry}s): a task still "
                "running when its lease ends could be delivered again; make retry larger",
                ConfigWarning,
                stacklevel=4,
            )
        if self.sqs is not None and self.bulk > 10:
            warnings.warn(
                f"bulk ({self.bulk}) is over 10, the most SQS delivers at once: "
                "the SQS broker takes 10 at a time",
                ConfigWarning,
                stacklevel=4,
            )

    # -- derived values -------------------------------------------------

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


# -- validation -------------------------------------------------------------


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


def _check_keys(keys: Mapping[str, Any], source: str) -> None:
    for key in keys:
        if key in KEYS:
            continue
        if key in UNSUPPORTED:
            raise ConfigError(f"config key {key!r} ({source}) is not supported: {UNSUPPORTED[key]}")
        near = difflib.get_close_matches(key, KEYS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown config key {key!r} ({source}){hint}")


_AT_MOST = f"(at most {MAX_INT})"


def _validate(c: Config) -> None:
    # The name is stored with each task.
    if not isinstance(c.name, str) or not c.name or not storable(c.name, NAME_LENGTH):
        raise _fail(
            "name", c.name, f"a non-empty string of at most {NAME_LENGTH} characters, without NUL"
        )
    if not _is_int(c.workers) or c.workers < 1:
        raise _fail("workers", c.workers, f"an integer >= 1 {_AT_MOST}")
    for key in ("daemonize_workers", "ack_failures", "compress", "sync", "catch_up", "scheduler"):
        if not isinstance(getattr(c, key), bool):
            raise _fail(key, getattr(c, key), "True or False")
    if not _is_int(c.recycle) or c.recycle < 0:
        raise _fail("recycle", c.recycle, f"an integer >= 0 (0: never recycle) {_AT_MOST}")
    if c.max_rss is not None and (not _is_int(c.max_rss) or c.max_rss < 1):
        raise _fail("max_rss", c.max_rss, f"None or a number of kilobytes >= 1 {_AT_MOST}")
    if not is_timeout(c.timeout):
        raise _fail("timeout", c.timeout, f"None or a number of seconds > 0 {_AT_MOST}")
    if not _is_int(c.max_attempts) or c.max_attempts < 0:
        raise _fail("max_attempts", c.max_attempts, f"an integer >= 0 (0: no limit) {_AT_MOST}")
    if not _is_number(c.retry) or c.retry <= 0:
        raise _fail("retry", c.retry, f"a number of seconds > 0 {_AT_MOST}")
    if not _is_int(c.save_limit) or c.save_limit < -1:
        raise _fail(
            "save_limit", c.save_limit, f"-1 (none), 0 (all) or a positive integer {_AT_MOST}"
        )
    if not _is_number(c.guard_cycle) or not 0 < c.guard_cycle < 60:
        raise _fail("guard_cycle", c.guard_cycle, "a number of seconds in (0, 60)")
    if c.queue_limit is not None and (not _is_int(c.queue_limit) or c.queue_limit < 1):
        raise _fail(
            "queue_limit", c.queue_limit, f"None (workers ** 2) or an integer >= 1 {_AT_MOST}"
        )
    if not isinstance(c.label, str):
        raise _fail("label", c.label, "a string")
    if c.redis is not None and not isinstance(c.redis, dict | str):
        raise _fail("redis", c.redis, "a dict of redis-py arguments or a redis:// URI")
    if isinstance(c.redis, str) and (
        not _splits(c.redis) or urlsplit(c.redis).scheme not in {"redis", "rediss", "unix"}
    ):
        raise _fail("redis", c.redis, "a URI starting with redis://, rediss:// or unix://")
    if isinstance(c.redis, dict) and not all(isinstance(k, str) for k in c.redis):
        raise ConfigError("config key 'redis' must be a dict of redis-py keyword arguments")
    for key in ("django_redis", "orm", "broker_class", "broker", "cache"):
        value = getattr(c, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise _fail(key, value, "None or a non-empty string")
    if c.broker_class is not None and "." not in c.broker_class:
        raise _fail(
            "broker_class", c.broker_class, "a dotted path such as 'myapp.brokers.MyBroker'"
        )
    if not _is_int(c.bulk) or c.bulk < 1:
        raise _fail("bulk", c.bulk, f"an integer >= 1 {_AT_MOST}")
    if not _is_number(c.poll) or c.poll <= 0:
        raise _fail("poll", c.poll, f"a number of seconds > 0 {_AT_MOST}")
    if not is_cached(c.cached):
        raise _fail("cached", c.cached, f"True, False or a number of seconds >= 1 {_AT_MOST}")
    if not isinstance(c.error_reporter, dict):
        raise _fail("error_reporter", c.error_reporter, "a dict of reporter name to settings")
    for name, settings in c.error_reporter.items():  # the plugins check their settings later
        if not isinstance(name, str) or not name or not isinstance(settings, dict | None):
            raise ConfigError(
                "config key 'error_reporter' must map reporter names to dicts of settings; "
                f"{name!r} maps to {type(settings).__name__}"
            )  # not the settings themselves: they hold tokens
    if not _is_int(c.cpu_affinity) or c.cpu_affinity < 0:
        raise _fail("cpu_affinity", c.cpu_affinity, f"an integer >= 0 (0: no pinning) {_AT_MOST}")
    if not isinstance(c.store, str) or "://" not in c.store or not _splits(c.store):
        raise _fail("store", c.store, "a SQLAlchemy URL such as sqlite:///qengine.sqlite3")
    if c.broker is not None and ("://" not in c.broker or not _splits(c.broker)):
        raise _fail(
            "broker", c.broker, "a URL: redis://…, rediss://…, unix://… or a SQLAlchemy URL"
        )
    if c.secret_key is not None and (not isinstance(c.secret_key, str) or not c.secret_key):
        raise ConfigError("config key 'secret_key' must be a non-empty string or None")
    fallbacks = c.secret_key_fallbacks
    if not isinstance(fallbacks, list | tuple):
        raise ConfigError(
            "config key 'secret_key_fallbacks' must be a list of old secret keys, "
            f"not a {type(fallbacks).__name__}"
        )  # the message names the type, never the value: it holds keys
    if not all(isinstance(key, str) and key for key in fallbacks):
        raise ConfigError(
            "config key 'secret_key_fallbacks' must hold only non-empty strings (old secret keys)"
        )
    if not _is_int(c.max_package_size) or c.max_package_size < 1024:
        raise _fail("max_package_size", c.max_package_size, f"a number of bytes >= 1024 {_AT_MOST}")
    zone_error = _fail("time_zone", c.time_zone, "an IANA zone name such as 'Europe/Paris'")
    if not isinstance(c.time_zone, str):
        raise zone_error
    try:
        zoneinfo.ZoneInfo(c.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise zone_error from exc
    _validate_sqs_mongo(c)


SQS_KEYS = ("aws_region", "region_name", "aws_access_key_id", "aws_secret_access_key",
            "aws_session_token", "profile_name", "endpoint_url")  # fmt: skip
"""What the ``sqs`` dict may hold: boto3 session arguments (aws_region as the spec spells
region_name) and the endpoint of an SQS-compatible server."""

_MONGO_DB_FORBIDDEN = set('/\\. "$\0')


def _validate_sqs_mongo(c: Config) -> None:
    """The SQS and MongoDB keys, and that no two keys choose a broker.

    Messages name the offending entry, never the dict's values: they hold credentials.
    """
    if c.sqs is not None:
        if not isinstance(c.sqs, dict):
            raise ConfigError(
                f"config key 'sqs' must be a dict such as {{'aws_region': 'us-east-1'}}, "
                f"not {type(c.sqs).__name__}"
            )
        for key, value in c.sqs.items():
            if key not in SQS_KEYS:
                allowed = ", ".join(SQS_KEYS)
                raise ConfigError(
                    f"config key 'sqs' has the unknown entry {key!r}; allowed: {allowed}"
                )
            if not isinstance(value, str) or not value:
                raise ConfigError(f"config key 'sqs' entry {key!r} must be a non-empty string")
        if "aws_region" in c.sqs and "region_name" in c.sqs:
            raise ConfigError("config key 'sqs' has both 'aws_region' and 'region_name': keep one")
        if ("aws_access_key_id" in c.sqs) != ("aws_secret_access_key" in c.sqs):
            raise ConfigError(
                "config key 'sqs' needs 'aws_access_key_id' and 'aws_secret_access_key' "
                "together (or neither, for boto3's own credential chain)"
            )
        endpoint = c.sqs.get("endpoint_url")
        if endpoint is not None and (
            not _splits(endpoint) or urlsplit(endpoint).scheme not in {"http", "https"}
        ):
            raise _fail("sqs", {"endpoint_url": endpoint}, "endpoint_url must be an http(s):// URL")
    if c.mongo is not None:
        if isinstance(c.mongo, str):
            if not c.mongo.startswith(("mongodb://", "mongodb+srv://")):
                raise _fail(
                    "mongo",
                    _mask_mongo(c.mongo),
                    "a URI starting with mongodb:// or mongodb+srv://, or a dict of "
                    "MongoClient arguments",
                )
        elif not isinstance(c.mongo, dict) or not all(isinstance(k, str) for k in c.mongo):
            raise ConfigError(
                "config key 'mongo' must be a dict of MongoClient arguments or a mongodb:// URI, "
                f"not {type(c.mongo).__name__}"
            )
    if c.mongo_db is not None and (
        not isinstance(c.mongo_db, str)
        or not 0 < len(c.mongo_db) < 64
        or _MONGO_DB_FORBIDDEN & set(c.mongo_db)
    ):
        raise _fail(
            "mongo_db",
            c.mongo_db,
            'None or a MongoDB database name: 1 to 63 characters, none of / \\ . space " $',
        )
    if c.broker_class:
        return  # a custom broker may read any of these keys
    chosen = [key for key in ("sqs", "mongo") if getattr(c, key) is not None]
    chosen += [key for key in ("orm", "broker") if getattr(c, key)][:1]
    if len(chosen) > 1:
        raise ConfigError(
            f"config keys {chosen[0]!r} and {chosen[1]!r} both choose the broker: set only one"
        )


# -- parsing strings (environment) ------------------------------------------

_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip
_BOOL_KEYS = {"daemonize_workers", "ack_failures", "compress", "sync", "catch_up", "scheduler"}
_INT_KEYS = {"workers", "recycle", "max_rss", "max_attempts", "save_limit", "queue_limit",
             "bulk", "cpu_affinity", "max_package_size"}  # fmt: skip
_FLOAT_KEYS = {"timeout", "retry", "guard_cycle", "poll"}
_OPTIONAL = {"max_rss", "timeout", "queue_limit", "redis", "django_redis", "orm", "sqs", "mongo",
             "mongo_db",
             "broker_class", "broker", "cache", "secret_key"}  # fmt: skip


def _parse_env(key: str, raw: str) -> Any:
    """Turn an environment string into the key's type; the constructor then validates it."""
    var = ENV_PREFIX + key.upper()
    text = raw.strip()
    if key in _OPTIONAL and text.lower() in {"", "none", "null"}:
        return None
    if key == "secret_key_fallbacks":
        return _parse_fallbacks(var, text)  # its errors must not show the value
    try:
        if key in _BOOL_KEYS:
            return _BOOLS[text.lower()]
        if key in _INT_KEYS:
            return int(text)
        if key in _FLOAT_KEYS:
            number = float(text)
            return int(number) if number.is_integer() else number
        if key == "cached":
            return _BOOLS[text.lower()] if text.lower() in _BOOLS else int(text)
        if key in {"error_reporter", "sqs"} or (key in {"redis", "mongo"} and text.startswith("{")):
            return json.loads(text)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"environment variable {var}={raw!r} cannot be read as {key}") from exc
    return raw


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
) -> Config:
    """Merge defaults, the TOML file, the environment and ``overrides``, strongest last."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
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
