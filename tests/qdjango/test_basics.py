"""The engine configured from Django settings, in sync mode: results become model instances."""

from __future__ import annotations

import pytest
from django.test import override_settings

import qengine
from qdjango.models import Failure, Schedule, Success, Task
from qengine.brokers import broker_kind
from qengine.errors import ScheduleError
from qengine.runtime import get_config
from qengine.schedules import Schedule as EngineSchedule

pytestmark = pytest.mark.django_db(transaction=True)


def test_configuration_comes_from_settings(settings) -> None:
    config = get_config()
    assert config.secret_key == settings.SECRET_KEY
    assert config.name == settings.Q_CLUSTER["name"]
    assert broker_kind(config).name == "orm"
    # The tables are reached through Django's own connection of that alias, no URL of its own.
    assert config.store == "django://default"
    assert config.broker_url == "django://default"


def test_changed_settings_are_read_again() -> None:
    with override_settings(Q_CLUSTER={"name": "other", "label": "Jobs", "orm": "default"}):
        assert get_config().name == "other"
    assert get_config().name != "other"


def test_sync_task_is_a_model_row() -> None:
    task_id = qengine.async_task("math.copysign", 2, -2, sync=True)
    task = Task.objects.get(id=task_id)
    assert task.result == -2.0
    assert task.success is True
    assert task.args == (2, -2)
    assert Success.objects.filter(id=task_id).exists()
    assert not Failure.objects.filter(id=task_id).exists()
    assert Task.get_result(task_id) == -2.0


def test_failed_sync_task_is_a_failure_row() -> None:
    task_id = qengine.async_task("math.floor", "x", sync=True)
    failure = Failure.objects.get(id=task_id)
    assert "must be real number" in str(failure.result)


def test_schedule_model_refuses_what_schedule_refuses() -> None:
    with pytest.raises(ScheduleError, match="cron"):
        Schedule(func="math.floor", schedule_type=Schedule.CRON, cron="not cron").save()
    assert not Schedule.objects.exists()
    item = Schedule(func="math.copysign", args="2, -2", kwargs="x=1", schedule_type="I", minutes=5)
    item.save()
    engine = EngineSchedule.get(item.pk)
    assert engine is not None
    assert engine.args == (2, -2)
    assert engine.kwargs == {"x": 1}
    assert engine.next_run == Schedule.objects.get(pk=item.pk).next_run


def test_schedules_keep_the_wall_clock_of_djangos_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from qdjango.tasks import schedule

    with override_settings(TIME_ZONE="Europe/Paris"):
        assert get_config().time_zone == "Europe/Paris"
        row = schedule("math.floor", 1, schedule_type=Schedule.CRON, cron="0 9 * * *")
        local = row.next_run.astimezone(ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (9, 0)
        assert row.next_run.utcoffset() is not None
        assert row.next_run.astimezone(ZoneInfo("UTC")).hour in (7, 8)  # CEST or CET
    assert get_config().time_zone == "UTC"  # the test settings' TIME_ZONE again


def test_a_time_zone_set_for_the_engine_wins_over_djangos(settings, monkeypatch) -> None:
    q_cluster = {**settings.Q_CLUSTER, "time_zone": "Asia/Tokyo"}
    with override_settings(TIME_ZONE="Europe/Paris", Q_CLUSTER=q_cluster):
        assert get_config().time_zone == "Asia/Tokyo"
    monkeypatch.setenv("QENGINE_TIME_ZONE", "America/New_York")
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert get_config().time_zone == "America/New_York"
