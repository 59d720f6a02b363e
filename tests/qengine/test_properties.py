"""Bad input, property-based: every wrong value is refused with an error naming it, at once.

Configuration keys, ``async_task`` options, schedule fields and package sizes
are fed random values (Hypothesis, derandomized so CI sees the same examples
every run). A value is either accepted, and then lands where it should
(config sources agree, a task is stored or queued, a schedule reads back as
written), or refused with ``ConfigError`` / ``ValueError`` / ``TypeError`` /
``ScheduleError`` naming the key, option or field, with nothing written.
Any other exception fails the test: that is a crash deeper inside.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qengine
from qengine import async_task, fetch, queue_size
from qengine.api import prepare
from qengine.config import KEYS, MAX_INT, Config, ConfigWarning, load_config
from qengine.db import get_engine
from qengine.errors import ConfigError, PackageTooLarge, ScheduleError
from qengine.schedules import Schedule, schedule
from qengine.signing import Signer
from qengine.transactions import set_commit_hook

PROPERTIES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run and machine
    database=None,  # nothing written beside the repository
    # The suite's autouse fixture gives each test (not each example) a fresh SQLite store;
    # the checks below compare counts before and after each example instead.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PER_NAME = settings(PROPERTIES, max_examples=30)
"""For tests run once per key, option or field: 30 examples each."""


class BadRepr:
    """A caller's object whose ``repr`` fails: an error message must still be made."""

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")


def huge_int() -> int:
    """An int whose ``repr`` raises ValueError (over Python's 4300-digit limit)."""
    return 10**5000


HUGE = st.builds(huge_int)

# Text a TOML file and an environment can carry: no lone surrogates.
CHARS = st.characters(codec="utf-8")
NO_NUL = st.characters(codec="utf-8", exclude_characters="\0")

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=MAX_INT + 1),
    st.floats(),
    st.text(CHARS, max_size=12),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
    st.builds(BadRepr),
    HUGE,
)
"""Any value at all, valid for some keys and not for others."""


def named(message: str, name: str) -> bool:
    """Whether an error message names the key, option or field ``name``."""
    return name in message or name.replace("_", " ") in message


# -- configuration --------------------------------------------------------------------------

OPTIONAL_WORDS = {"", "none", "null"}  # what the environment reads as None for optional keys


def words(min_size: int = 1, max_size: int = 30) -> st.SearchStrategy[str]:
    """Non-empty strings an environment cannot mistake for None."""
    return st.text(NO_NUL, min_size=min_size, max_size=max_size).filter(
        lambda text: text.strip().lower() not in OPTIONAL_WORDS
    )


IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
HOST = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,5})?", fullmatch=True)
SECONDS = st.one_of(
    st.integers(1, MAX_INT),
    st.floats(min_value=0, max_value=MAX_INT, exclude_min=True, allow_nan=False),
)
URL = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["sqlite", "postgresql+psycopg", "mysql+pymysql", "redis"]),
    HOST,
    IDENT,
)
ZONES = sorted(zoneinfo.available_timezones())
FLAT = st.one_of(words(max_size=10), st.integers(-1000, 1000), st.booleans())

VALID: dict[str, st.SearchStrategy[Any]] = {
    "name": st.text(NO_NUL, min_size=1, max_size=100),
    "workers": st.integers(1, MAX_INT),
    "daemonize_workers": st.booleans(),
    "recycle": st.integers(0, MAX_INT),
    "max_rss": st.none() | st.integers(1, MAX_INT),
    "timeout": st.none() | SECONDS,
    "ack_failures": st.booleans(),
    "max_attempts": st.integers(0, MAX_INT),
    "retry": SECONDS,
    "compress": st.booleans(),
    "save_limit": st.integers(-1, MAX_INT),
    "guard_cycle": st.floats(min_value=0, max_value=60, exclude_min=True, exclude_max=True),
    "sync": st.booleans(),
    "queue_limit": st.none() | st.integers(1, MAX_INT),
    "label": st.text(CHARS, max_size=40),
    "catch_up": st.booleans(),
    "redis": st.none()
    | st.dictionaries(IDENT, FLAT, max_size=3)
    | st.builds("redis://{}:{}/{}".format, HOST, st.integers(1, 65535), st.integers(0, 15)),
    "django_redis": st.none() | words(),
    "orm": st.none() | words(),
    "broker_class": st.none() | st.builds("{}.{}".format, IDENT, IDENT),
    "sqs": st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "aws_region": words(),
            "profile_name": words(),
            "endpoint_url": st.builds("http://{}:{}".format, HOST, st.integers(1, 65535)),
        },
    ),
    "mongo": st.none()
    | st.builds("mongodb://{}/{}".format, HOST, IDENT)
    | st.dictionaries(IDENT, FLAT, max_size=3),
    "mongo_db": st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,63}", fullmatch=True),
    "bulk": st.none() | st.integers(1, MAX_INT),
    "poll": SECONDS,
    "cache": st.none()
    | st.sampled_from(["store", "memory"])
    | st.builds("redis://{}:{}/0".format, HOST, st.integers(1, 65535)),
    "cached": st.booleans() | st.integers(1, MAX_INT),
    "scheduler": st.booleans(),
    "error_reporter": st.dictionaries(IDENT, st.dictionaries(IDENT, FLAT, max_size=2), max_size=2),
    "cpu_affinity": st.integers(0, MAX_INT),
    "broker": st.none() | URL,
    "store": URL,
    "secret_key": st.none() | words(),
    "secret_key_fallbacks": st.lists(words(), max_size=3),
    "max_package_size": st.integers(1024, MAX_INT),
    "time_zone": st.sampled_from(ZONES),
}

# The keys that choose a broker; two of them together are refused (a test below).
BROKER_KEYS = ("orm", "broker", "sqs", "mongo")


def _not_bool() -> st.SearchStrategy[Any]:
    return ANYTHING.filter(lambda v: not isinstance(v, bool))


def _bad_int(low: int, *, optional: bool = False) -> st.SearchStrategy[Any]:
    wrong_type = ANYTHING.filter(
        lambda v: (
            not (isinstance(v, int) and not isinstance(v, bool)) and not (optional and v is None)
        )
    )
    return st.one_of(
        st.integers(max_value=low - 1),
        st.integers(min_value=MAX_INT + 1),
        HUGE,
        wrong_type,
    )


def _bad_seconds(*, optional: bool = False, below: int | None = None) -> st.SearchStrategy[Any]:
    """Not a number of seconds > 0 and at most MAX_INT (or under ``below``)."""
    wrong_type = ANYTHING.filter(
        lambda v: (
            not (isinstance(v, int | float) and not isinstance(v, bool))
            and not (optional and v is None)
        )
    )
    too_large = (
        st.floats(min_value=below) | st.integers(min_value=below)
        if below is not None
        else st.floats(min_value=MAX_INT, exclude_min=True) | st.integers(min_value=MAX_INT + 1)
    )
    return st.one_of(
        st.floats(max_value=0),
        st.integers(max_value=0),
        too_large,
        st.sampled_from([math.nan, math.inf, -math.inf]),
        HUGE,
        wrong_type,
    )


def _bad_text(*, optional: bool = True) -> st.SearchStrategy[Any]:
    """Not None (when optional) nor a non-empty string."""
    return st.one_of(
        st.just(""),
        ANYTHING.filter(lambda v: not isinstance(v, str) and not (optional and v is None)),
    )


def _bad_url(*, optional: bool) -> st.SearchStrategy[Any]:
    return st.one_of(
        _bad_text(optional=optional),
        st.text(CHARS, max_size=20).filter(lambda t: "://" not in t),
        st.builds("{}://[{}".format, IDENT, HOST),  # a stray bracket: urlsplit refuses it
    )


_FORBIDDEN_IN_DB = '/\\. "$\0'

INVALID: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(
        _bad_text(optional=False),
        st.text(NO_NUL, min_size=101, max_size=120),
        st.builds("{}\0{}".format, st.text(max_size=5), st.text(max_size=5)),
    ),
    "workers": _bad_int(1),
    "daemonize_workers": _not_bool(),
    "recycle": _bad_int(0),
    "max_rss": _bad_int(1, optional=True),
    "timeout": _bad_seconds(optional=True),
    "ack_failures": _not_bool(),
    "max_attempts": _bad_int(0),
    "retry": _bad_seconds(),
    "compress": _not_bool(),
    "save_limit": _bad_int(-1),
    "guard_cycle": _bad_seconds(below=60),
    "sync": _not_bool(),
    "queue_limit": _bad_int(1, optional=True),
    "label": ANYTHING.filter(lambda v: not isinstance(v, str)),
    "catch_up": _not_bool(),
    "redis": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, dict | str) and v is not None),
        st.builds("{}://{}".format, st.sampled_from(["http", "mongodb", "sqlite", ""]), HOST),
        st.builds("redis://[{}".format, HOST),
        st.dictionaries(st.integers(), FLAT, min_size=1, max_size=2),
    ),
    "django_redis": _bad_text(),
    "orm": _bad_text(),
    "broker_class": st.one_of(_bad_text(), IDENT),
    "sqs": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, dict) and v is not None),
        st.dictionaries(
            IDENT.filter(lambda k: k not in ("aws_region", "profile_name")),
            words(),
            min_size=1,
            max_size=2,
        ).filter(
            lambda d: any(k not in ("region_name", "aws_session_token", "endpoint_url") for k in d)
        ),
        st.fixed_dictionaries({"aws_region": _bad_text(optional=False)}),
        st.just({"aws_region": "eu-west-1", "region_name": "eu-west-1"}),
        st.just({"aws_access_key_id": "AKIA"}),
        st.fixed_dictionaries(
            {
                "endpoint_url": st.one_of(
                    st.builds("ftp://{}".format, HOST), st.builds("http://[{}".format, HOST)
                )
            }
        ),
    ),
    "mongo": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, dict | str) and v is not None),
        st.text(CHARS, max_size=20).filter(lambda t: not t.startswith("mongodb")),
        st.dictionaries(st.integers(), FLAT, min_size=1, max_size=2),
    ),
    "mongo_db": st.one_of(
        _bad_text(),
        st.text(min_size=64, max_size=80),
        st.builds("{}{}".format, st.text(max_size=5), st.sampled_from(list(_FORBIDDEN_IN_DB))),
    ),
    "bulk": _bad_int(1, optional=True),
    "poll": _bad_seconds(),
    "cache": st.one_of(
        _bad_text(),
        words().filter(lambda w: w not in {"store", "memory"}),  # a cache nobody serves
    ),
    "cached": st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=MAX_INT + 1),
        ANYTHING.filter(lambda v: not isinstance(v, int)),
    ),
    "scheduler": _not_bool(),
    "error_reporter": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, dict)),
        st.dictionaries(st.integers(), st.just({}), min_size=1, max_size=2),
        st.dictionaries(
            IDENT,
            st.one_of(st.integers(), st.text(), st.lists(st.integers())),
            min_size=1,
            max_size=2,
        ),
    ),
    "cpu_affinity": _bad_int(0),
    "broker": _bad_url(optional=True),
    "store": _bad_url(optional=False),
    "secret_key": _bad_text(),
    "secret_key_fallbacks": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, list)),
        st.lists(st.one_of(st.just(""), st.integers(), st.none()), min_size=1, max_size=3),
    ),
    "max_package_size": _bad_int(1024),
    "time_zone": st.one_of(
        ANYTHING.filter(lambda v: not isinstance(v, str)),
        st.builds("Nowhere/{}".format, st.text(CHARS, max_size=10)),
        st.sampled_from(["", "/etc/passwd", "../UTC", "UTC\0", "Europe"]),
    ),
}


def test_every_config_key_has_valid_and_invalid_values_here():
    # A new key must be added to both tables, or this file would silently skip it.
    assert set(VALID) == set(KEYS)
    assert set(INVALID) == set(KEYS)


@pytest.mark.parametrize("key", KEYS)
@PER_NAME
@given(data=st.data())
def test_a_wrong_value_of_any_key_raises_config_error_naming_the_key(key, data):
    value = data.draw(INVALID[key], label=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        with pytest.raises(ConfigError) as constructor:
            Config(**{key: value})
        with pytest.raises(ConfigError) as loaded:
            load_config({key: value}, environ={})
    for info in (constructor, loaded):
        assert repr(key) in str(info.value)


@st.composite
def valid_values(draw: st.DrawFn) -> dict[str, Any]:
    """Every key at once, with at most one key choosing the broker."""
    chooser = draw(st.sampled_from((None, *BROKER_KEYS)))
    keys = [k for k in KEYS if k not in BROKER_KEYS or k == chooser]
    return {key: draw(VALID[key], label=key) for key in keys}


def env_text(value: Any) -> str:
    """How a user writes ``value`` in a ``QENGINE_*`` variable (README, Configuration)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= ord(char) < 0x7F:
            out.append(char)
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@PROPERTIES
@given(values=valid_values())
def test_valid_values_round_trip_through_keywords_environment_and_file(tmp_path, values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        config = Config(**values)
        environ = {f"QENGINE_{key.upper()}": env_text(value) for key, value in values.items()}
        path = tmp_path / "qengine.toml"
        path.write_text(
            "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items() if v is not None)
        )
        assert load_config(values, environ={}) == config
        assert load_config(environ=environ) == config
        assert load_config(environ={}, config_file=str(path)) == config
        assert config.replace(**values) == config


@pytest.mark.parametrize("key", KEYS)
@PER_NAME
@given(raw=st.text(CHARS, max_size=40))
def test_any_environment_text_is_read_or_refused_naming_the_key(key, raw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            load_config(environ={f"QENGINE_{key.upper()}": raw})
        except ConfigError as exc:
            refused: ConfigError | None = exc
        else:
            refused = None
    if refused is not None:
        assert key in str(refused)


@pytest.mark.parametrize(
    ("first", "second"),
    [("sqs", "mongo"), ("sqs", "orm"), ("mongo", "broker"), ("sqs", "broker")],
)
def test_two_keys_choosing_the_broker_are_refused_naming_both(first, second):
    values = {"sqs": {}, "mongo": "mongodb://h/db", "orm": "default", "broker": "redis://h"}
    with pytest.raises(ConfigError) as info:
        Config(**{first: values[first], second: values[second]})
    assert repr(first) in str(info.value)
    assert repr(second) in str(info.value)


# -- async_task options ------------------------------------------------------------------------


@pytest.fixture
def sync_store() -> Iterator[Config]:
    """Sync by default on the test's SQLite file (its broker too), no framework commit hook."""
    previous = set_commit_hook(None)  # Django's, if another test loaded qdjango
    config = qengine.configure(qengine.get_config(), sync=True)
    yield config
    set_commit_hook(previous)


def landed(config: Config) -> tuple[int, int, int]:
    """Rows in the store, the cache and the queue: where a task can land."""
    engine = get_engine(config.store)
    with engine.connect() as conn:
        tasks, cached, queued = (
            conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("q_task", "q_cache", "q_queue")
        )
    return tasks, cached, queued


SAFE_HOOK = st.builds("nowhere_at_all.{}".format, IDENT)  # never resolves to a real function

OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "hook": st.one_of(
        SAFE_HOOK,
        ANYTHING.filter(lambda v: not isinstance(v, str)),
        st.builds("nowhere.{}".format, st.text(CHARS, min_size=250, max_size=260)),
        st.builds("nowhere.a{}b".format, st.just("\0")),
    ),
    "group": st.one_of(ANYTHING, st.text(CHARS, max_size=110)),
    "task_name": st.one_of(ANYTHING, st.text(CHARS, max_size=110)),
    "save": ANYTHING,
    "sync": ANYTHING,
    "cached": st.one_of(ANYTHING, st.integers(-2, 3600)),
    "ack_failure": ANYTHING,
    "broker": ANYTHING,
    "timeout": st.one_of(ANYTHING, st.floats(-1, 1e10)),
    "on_commit": st.one_of(ANYTHING, st.just(True), st.text(CHARS, max_size=5)),
}


def test_every_async_task_option_gets_random_values_here():
    assert set(OPTION_VALUES) == qengine.api.OPTION_KEYS


@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
@PER_NAME
@given(data=st.data(), in_q_options=st.booleans())
def test_any_option_value_lands_the_task_or_is_refused_naming_the_option(
    sync_store, option, data, in_q_options
):
    value = data.draw(OPTION_VALUES[option], label=option)
    before = landed(sync_store)
    call = {"q_options": {option: value}} if in_q_options else {option: value}
    try:
        task_id = async_task("math.floor", 2.5, **call)
    except (ValueError, TypeError) as exc:  # ConfigError and PackageTooLarge are ValueErrors
        refused: Exception | None = exc
    else:
        refused = None
    if refused is not None:
        assert named(str(refused), option), str(refused)
        assert landed(sync_store) == before  # refused: nothing stored, cached or queued
        return
    tasks, cached, queued = landed(sync_store)
    options = {option: value}
    if options.get("sync") is False:
        assert (tasks, cached, queued) == (before[0], before[1], before[2] + 1)
        assert queue_size() == before[2] + 1
    elif options.get("cached"):
        assert fetch(task_id, cached=True).result == 2
    elif options.get("save") is False:
        assert fetch(task_id) is None  # a success not kept, as asked
    else:
        assert fetch(task_id).result == 2
        assert tasks == before[0] + 1


def test_a_keyword_task_name_that_is_empty_defers_to_q_options(sync_store):
    # Django Q reads `task_name or q_options["task_name"]`: falsy keywords are not checked.
    task_id = async_task("math.floor", 2.5, task_name="", q_options={"task_name": "kept"})
    assert fetch(task_id).name == "kept"


@pytest.mark.parametrize(
    ("func", "error"),
    [
        (42, TypeError),
        ("floor", ValueError),
        ("math.floor\0", ValueError),
        ("nowhere." + "x" * 260, ValueError),
    ],
)
def test_a_bad_func_is_refused_at_call_time(sync_store, func, error):
    before = landed(sync_store)
    with pytest.raises(error, match="func"):
        async_task(func)
    assert landed(sync_store) == before


@pytest.mark.parametrize("value", [{1: 2, "hook": 3}, {"colour": "red", 7: 8}])
def test_unknown_q_options_keys_of_any_type_are_listed(sync_store, value):
    with pytest.raises(ValueError, match="unknown q_options key"):
        async_task("math.floor", 2.5, q_options=value)


# -- schedule fields -------------------------------------------------------------------------

LITERAL = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(CHARS, max_size=8),
        st.binary(max_size=4),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=8,
)  # fmt: skip
"""Literals and, through floats (nan, inf), values ``repr`` cannot write as literals."""

NOT_LITERAL = st.one_of(
    st.builds(object), st.builds(BadRepr), HUGE, st.dates(), st.datetimes(),
    st.frozensets(st.integers(), min_size=1, max_size=2), st.just(set()), st.just(range(3)),
)  # fmt: skip

SCHEDULE_TYPES = st.sampled_from(["O", "I", "H", "D", "W", "M", "Q", "Y", "C"])
CRON = st.one_of(
    st.sampled_from(["*/5 * * * *", "0 3 * * 1-5", "0 0 31 2 *", "61 * * * *", "@daily", "* *"]),
    st.text(CHARS, max_size=20),
    st.text("0123456789*/-, LW#?", max_size=20),
    st.text("0123456789*/-, LW#?", min_size=101, max_size=110),
)  # fmt: skip
PATH = st.one_of(st.just("math.floor"), st.builds("nowhere_at_all.{}".format, IDENT))

# For each field: the schedule_type to test it under, and the values to try.
FIELDS: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[Any]]] = {
    "schedule_type": (st.just("O"), st.one_of(SCHEDULE_TYPES, ANYTHING, st.text(max_size=2))),
    "minutes": (st.sampled_from(["I", "D"]), st.one_of(ANYTHING, st.integers(-5, MAX_INT + 5))),
    "cron": (st.sampled_from(["C", "H"]), st.one_of(CRON, ANYTHING)),
    "repeats": (st.just("O"), st.one_of(ANYTHING, st.integers(-(2**32), 2**32))),
    "next_run": (
        SCHEDULE_TYPES.filter(lambda t: t != "C"),
        st.one_of(
            st.datetimes(timezones=st.none() | st.timezones()),
            st.dates(),
            st.sampled_from([datetime.min, datetime.max]),
            ANYTHING,
        ),
    ),
    "args": (st.just("O"), st.lists(st.one_of(LITERAL, NOT_LITERAL), max_size=3).map(tuple)),
    "kwargs": (
        st.just("O"),
        st.dictionaries(
            st.builds("k_{}".format, IDENT), st.one_of(LITERAL, NOT_LITERAL), max_size=3
        ),
    ),
    "name": (st.just("O"), st.one_of(ANYTHING, st.text(CHARS, max_size=105))),
    "cluster": (st.just("O"), st.one_of(ANYTHING, st.text(CHARS, max_size=105))),
    "func": (st.just("O"), st.one_of(PATH, ANYTHING, st.builds(lambda: print))),
    "hook": (st.just("O"), st.one_of(PATH, ANYTHING, st.just("a.b\0"))),
    "q_options": (
        st.just("O"),
        st.one_of(
            ANYTHING,
            st.dictionaries(
                st.one_of(
                    st.sampled_from(sorted([*qengine.api.OPTION_KEYS, "broker_name"])),
                    st.integers(),
                    st.text(max_size=4),
                    st.none(),
                ),
                ANYTHING,
                max_size=2,
            ),
        ),
    ),
}


def _expected_next_run(value: Any) -> datetime | None:
    if value is None:
        return None  # now, or the first cron slot: checked as "not before creation"
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=qengine.get_config().zone)
    return value.astimezone(UTC)


@pytest.mark.parametrize("field", sorted(FIELDS))
@PER_NAME
@given(data=st.data())
def test_any_field_value_is_stored_as_written_or_refused_naming_the_field(field, data):
    kind_strategy, values = FIELDS[field]
    kind = data.draw(kind_strategy, label="schedule_type")
    value = data.draw(values, label=field)
    fields: dict[str, Any] = {"func": "math.floor", "schedule_type": kind, "args": (), "kwargs": {}}
    fields[field] = value
    # What the type needs besides its letter, unless that is the field under test.
    if fields["schedule_type"] == "I":
        fields.setdefault("minutes", 5)
    if fields["schedule_type"] == "C":
        fields.setdefault("cron", "*/5 * * * *")
    written = dict(fields)
    before = len(Schedule.list())
    created = datetime.now(UTC)
    try:
        item = schedule(fields.pop("func"), *fields.pop("args"), **fields.pop("kwargs"), **fields)
    except ScheduleError as exc:
        refused: ScheduleError | None = exc
    else:
        refused = None
    if refused is not None:
        assert named(str(refused), field), str(refused)
        assert len(Schedule.list()) == before
        return
    stored = Schedule.get(item.id)
    assert stored is not None
    item.delete()
    assert stored.func == written["func"]
    assert stored.schedule_type == written["schedule_type"]
    assert stored.args == tuple(written["args"])
    assert stored.kwargs == written["kwargs"]
    for key in ("name", "cluster", "hook", "minutes", "cron"):
        assert getattr(stored, key) == written.get(key)
    assert stored.repeats == written.get("repeats", -1)
    assert stored.q_options == (written.get("q_options") or None)
    expected = _expected_next_run(written.get("next_run"))
    if expected is None:
        assert stored.next_run >= created.replace(microsecond=0)
    else:
        assert stored.next_run == expected


def test_a_date_is_not_a_next_run():
    with pytest.raises(ScheduleError, match="next_run must be a datetime"):
        schedule("math.floor", next_run=date(2030, 1, 1))
    assert Schedule.list() == []


# -- package size --------------------------------------------------------------------------------

MAX_SIZE = 64 * 1024


def largest_fitting_argument(**options: Any) -> int:
    """The most bytes a ``size_of`` argument can have within ``max_package_size``.

    A package grows with its argument, so a bisection finds the edge. Each
    probe builds and signs the message as ``async_task`` would with these
    ``options`` (a message pickles only its non-default fields, so they change
    its size), and queues and runs nothing; the task name is fixed because a
    generated one varies in length.
    """
    config = qengine.get_config()
    signer = Signer.for_config(config, "probe")  # the key's value does not change the size

    def fits(size: int) -> bool:
        message = prepare(
            "tests.bad_tasks.size_of", (b"x" * size,), {}, {"task_name": "edge", **options}, config
        )
        try:
            signer.dumps(message)
        except PackageTooLarge:
            return False
        return True

    low, high = 0, MAX_SIZE
    assert fits(low)
    assert not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@pytest.fixture
def small_packages() -> Config:
    return qengine.configure(qengine.get_config(), max_package_size=MAX_SIZE)


def test_just_under_max_package_size_runs_and_one_byte_more_is_refused(small_packages):
    edge = largest_fitting_argument(sync=True)  # the options of the calls below
    assert MAX_SIZE - 1024 < edge < MAX_SIZE  # the rest is the task message and the header
    task_id = async_task("tests.bad_tasks.size_of", b"x" * edge, task_name="edge", sync=True)
    assert fetch(task_id).result == edge
    before = landed(small_packages)
    with pytest.raises(PackageTooLarge, match="max_package_size"):
        async_task("tests.bad_tasks.size_of", b"x" * (edge + 1), task_name="edge", sync=True)
    assert landed(small_packages) == before


@pytest.fixture
def queue_edge(small_packages) -> int:
    """The largest argument a queued package holds (once per test, not per example)."""
    return largest_fitting_argument()


@PROPERTIES
@given(size=st.integers(0, 2 * MAX_SIZE))
def test_a_package_is_queued_exactly_when_it_fits(queue_edge, size):
    edge = queue_edge
    before = queue_size()
    try:
        async_task("tests.bad_tasks.size_of", b"x" * size, task_name="edge")
    except PackageTooLarge:
        assert size > edge
        assert queue_size() == before
    else:
        assert size <= edge
        assert queue_size() == before + 1


def test_compressed_tasks_over_the_caps_are_refused_at_call_time(small_packages):
    qengine.configure(small_packages, compress=True)
    before = queue_size()
    # Zeros compress to almost nothing, but the cluster would refuse to unpack them.
    with pytest.raises(PackageTooLarge, match="max_package_size"):
        async_task("tests.bad_tasks.size_of", bytes(5 * MAX_SIZE))
    # Random bytes do not compress: the package itself is too large.
    with pytest.raises(PackageTooLarge, match="max_package_size"):
        async_task("tests.bad_tasks.size_of", os.urandom(MAX_SIZE + 1))
    assert queue_size() == before
    async_task("tests.bad_tasks.size_of", bytes(3 * MAX_SIZE))  # within both caps
    assert queue_size() == before + 1
