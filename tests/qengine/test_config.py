"""Config: defaults, validation, and the precedence of its sources."""

from __future__ import annotations

import os

import pytest

import qengine
from qengine.brokers import broker_class, broker_kind
from qengine.config import Config, ConfigWarning, default_queue_limit, load_config
from qengine.errors import ConfigError
from qengine.runtime import get_config


def test_defaults_follow_the_spec():
    config = load_config(environ={})
    assert config.name == "default"
    assert config.workers == (os.cpu_count() or 1)
    assert config.daemonize_workers is True
    assert config.recycle == 500
    assert config.max_rss is None
    assert config.timeout is None
    assert config.ack_failures is False
    assert config.max_attempts == 0
    assert config.retry == 60
    assert config.compress is False
    assert config.save_limit == 250
    assert config.guard_cycle == 0.5
    assert config.sync is False
    assert config.queue_limit == default_queue_limit(config.workers) == 64
    assert config.label == "Django Q"
    assert config.catch_up is True
    assert config.redis is None
    assert config.broker_class is None
    assert config.bulk is None
    assert config.receive_count == config.queue_limit
    assert config.poll == 0.2
    assert config.cached is False
    assert config.scheduler is True
    assert config.error_reporter == {}
    assert config.cpu_affinity == 0
    assert config.orm is None
    assert config.store == "sqlite:///qengine.sqlite3"
    assert config.broker is None
    assert config.secret_key is None
    assert config.time_zone == "UTC"
    assert broker_class(config).embedded_secret_url(config) == "sqlite:///qengine.sqlite3"


def test_queue_limit_defaults_to_32_per_worker_never_below_workers_squared():
    assert Config(workers=3).queue_limit == 96
    assert Config(workers=40).queue_limit == 1600  # Django Q's workers ** 2 is the floor
    assert Config(workers=3, queue_limit=4).queue_limit == 4


def test_bulk_defaults_to_the_room_queue_limit_leaves():
    assert Config(workers=2).receive_count == 64
    assert Config(workers=2, bulk=5).receive_count == 5
    assert Config(workers=2, queue_limit=8).receive_count == 8


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("guard_cycle", 0, "(0, 60)"),
        ("guard_cycle", 60, "(0, 60)"),
        ("workers", 0, ">= 1"),
        ("workers", "4", ">= 1"),
        ("save_limit", -2, "-1 (none)"),
        ("retry", 0, "> 0"),
        ("bulk", 0, ">= 1"),
        ("cached", 0, "seconds >= 1"),
        ("time_zone", "Mars/Olympus", "IANA"),
        ("store", "not a url", "SQLAlchemy URL"),
        ("redis", "http://x", "redis://"),
        ("broker_class", "NoDots", "dotted path"),
        ("sync", "yes", "True or False"),
        ("max_package_size", 10, ">= 1024"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        Config(**{key: value})
    message = str(info.value)
    assert repr(key) in message
    assert repr(value) in message
    assert allowed in message


def test_unknown_key_suggests_the_nearest_known_one():
    with pytest.raises(ConfigError, match="did you mean 'workers'"):
        load_config({"wokers": 2}, environ={})


def test_discontinued_spec_keys_explain_why():
    with pytest.raises(ConfigError, match="Disque is discontinued"):
        load_config({"disque_nodes": ["127.0.0.1:7711"]}, environ={})


def test_timeout_not_below_retry_warns():
    with pytest.warns(ConfigWarning, match="retry"):
        Config(timeout=60, retry=60)


def test_environment_values_are_parsed_by_type():
    config = load_config(
        environ={
            "QENGINE_WORKERS": "3",
            "QENGINE_COMPRESS": "true",
            "QENGINE_TIMEOUT": "2.5",
            "QENGINE_CACHED": "60",
            "QENGINE_REDIS": '{"host": "127.0.0.1", "port": 6379}',
            "QENGINE_MAX_RSS": "none",
            "QENGINE_TEST_REDIS_URL": "ignored: belongs to the test suite",
        }
    )
    assert config.workers == 3
    assert config.compress is True
    assert config.timeout == 2.5
    assert config.cached == 60
    assert config.redis == {"host": "127.0.0.1", "port": 6379}
    assert config.max_rss is None


def test_unreadable_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="QENGINE_WORKERS"):
        load_config(environ={"QENGINE_WORKERS": "many"})
    with pytest.raises(ConfigError, match="QENGINE_WOKERS"):
        load_config(environ={"QENGINE_WOKERS": "2"})


def test_precedence_configure_over_environment_over_file(tmp_path, monkeypatch):
    path = tmp_path / "q.toml"
    path.write_text('name = "from-file"\nworkers = 5\nlabel = "File"\nretry = 90\n')
    monkeypatch.setenv("QENGINE_CONFIG", str(path))
    monkeypatch.setenv("QENGINE_WORKERS", "7")
    monkeypatch.setenv("QENGINE_LABEL", "Env")
    config = qengine.configure(label="Code")
    assert config.name == "from-file"
    assert config.retry == 90
    assert config.workers == 7
    assert config.label == "Code"
    assert get_config() is config


def test_a_frameworks_defaults_are_below_everything_the_user_set(tmp_path):
    defaults = {"time_zone": "Europe/Paris", "label": "Framework", "retry": 120}
    path = tmp_path / "q.toml"
    path.write_text('label = "File"\n')
    config = load_config(
        {"retry": 90}, environ={"QENGINE_TIME_ZONE": "Asia/Tokyo"}, config_file=str(path),
        defaults=defaults,
    )  # fmt: skip
    assert (config.time_zone, config.label, config.retry) == ("Asia/Tokyo", "File", 90)
    assert load_config(environ={}, defaults=defaults).time_zone == "Europe/Paris"
    with pytest.raises(ConfigError, match="unknown config key 'timezone'"):
        load_config(environ={}, defaults={"timezone": "UTC"})


def test_config_file_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(environ={}, config_file=str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={}, config_file=str(tmp_path / "missing.toml"))
    typo = tmp_path / "typo.toml"
    typo.write_text("retyr = 5\n")
    with pytest.raises(ConfigError, match="did you mean 'retry'"):
        load_config(environ={}, config_file=str(typo))


def test_configure_replaces_the_whole_configuration():
    first = qengine.configure(name="one", workers=2)
    second = qengine.configure(name="two")
    assert first.workers == 2
    assert second.workers != 2 or (os.cpu_count() == 2)
    assert get_config().name == "two"


def test_configure_drops_connections_made_for_the_old_configuration(tmp_path):
    from qengine import db

    qengine.configure(store=f"sqlite:///{tmp_path}/a.sqlite3")
    qengine.async_task("math.floor", 1.5, sync=True)
    assert db._engines
    qengine.configure(store=f"sqlite:///{tmp_path}/b.sqlite3")
    assert not db._engines


def test_masked_dict_hides_secrets():
    config = Config(
        secret_key="hush",
        broker="redis://user:pw@localhost:6379/0",
        store="postgresql://u:pw2@db/x",
    )
    shown = config.as_dict()
    assert shown["secret_key"] == "********"
    assert "pw" not in shown["broker"]
    assert "pw2" not in shown["store"]
    assert "hush" not in repr(config)


def test_broker_kind_follows_the_urls():
    assert broker_kind(Config()).name == "sql"
    assert broker_kind(Config(broker="redis://localhost")).name == "redis"
    assert broker_kind(Config(redis={"host": "localhost"})).name == "redis"
    assert Config(redis="redis://localhost:6379/1").broker_url == "redis://localhost:6379/1"
    remote = Config(broker="postgresql://localhost/x")
    assert broker_class(remote).embedded_secret_url(remote) is None


def test_reporter_settings_are_masked_and_kept_out_of_repr() -> None:
    config = load_config(
        {"error_reporter": {"sentry": {"dsn": "https://key@sentry.example/1"}}}, environ={}
    )
    assert config.as_dict(masked=True)["error_reporter"] == {"sentry": {"dsn": "********"}}
    assert config.as_dict(masked=False)["error_reporter"]["sentry"]["dsn"].startswith("https")
    assert "sentry.example" not in repr(config)


def test_cache_is_checked_when_the_configuration_is_made():
    with pytest.raises(ConfigError, match=r"'cache' has the invalid value 'no-such-cache'"):
        qengine.configure(cache="no-such-cache")
    for good in (None, "store", "memory", "redis://127.0.0.1:6379/3"):
        assert Config(cache=good).cache == good


def test_each_keys_environment_reading_follows_its_type():
    env = {
        "QENGINE_WORKERS": "3",  # int
        "QENGINE_TIMEOUT": "2.5",  # float | None
        "QENGINE_MAX_RSS": "none",  # int | None
        "QENGINE_CACHED": "true",  # bool | int
        "QENGINE_SYNC": "yes",  # bool
        "QENGINE_REDIS": '{"host": "127.0.0.1"}',  # dict | str | None
        "QENGINE_SECRET_KEY_FALLBACKS": "old1, old2",  # tuple[str, ...]
    }
    config = load_config(environ=env)
    assert (config.workers, config.timeout, config.max_rss) == (3, 2.5, None)
    assert (config.cached, config.sync, config.redis) == (True, True, {"host": "127.0.0.1"})
    assert config.secret_key_fallbacks == ("old1", "old2")
    assert load_config(environ={"QENGINE_CACHED": "30"}).cached == 30
    with pytest.raises(ConfigError, match="QENGINE_WORKERS='many' cannot be read as workers"):
        load_config(environ={"QENGINE_WORKERS": "many"})
