"""qdjango takes the engine's definitions: the schedule types and the order of a group."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import translation

import qdjango
from qdjango.models import Schedule, Task
from qdjango.tasks import fetch_group
from qengine import api as engine_api
from qengine.runtime import get_store
from qengine.schedules import ScheduleType
from qengine.task import GROUP_ORDER
from qengine.task import Task as EngineTask

# -- schedule types -------------------------------------------------------------------------


def test_schedule_type_choices_are_the_engines() -> None:
    field = Schedule._meta.get_field("schedule_type")
    with translation.override("en"):
        choices = [(letter, str(label)) for letter, label in field.choices]
    assert choices == [(kind.value, kind.label) for kind in ScheduleType]
    assert field.default == ScheduleType.ONCE
    assert all(getattr(Schedule, kind.name) is kind for kind in ScheduleType)


def test_schedule_type_labels_are_still_translated() -> None:
    with translation.override("de"):
        assert str(dict(Schedule.TYPE)["O"]) == "Einmalig"
    with translation.override("fr"):
        assert str(dict(Schedule.TYPE)["O"]) == "Une fois"


@pytest.mark.parametrize("po", sorted(Path(qdjango.__file__).parent.glob("locale/*/*/django.po")))
def test_every_schedule_type_label_has_a_translation(po: Path) -> None:
    # makemessages cannot see labels that come from the engine; the msgids must stay.
    text = po.read_text(encoding="utf-8")
    for kind in ScheduleType:
        found = re.search(rf'^msgid "{kind.label}"\nmsgstr "(.+)"$', text, re.MULTILINE)
        assert found, f"{po}: no translation of {kind.label!r}"


# -- group order ----------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, 12, tzinfo=UTC)

# (id, enqueued, finished, success): "b" and "c" were enqueued at the same instant (the id
# decides), and the tasks finished in nearly the opposite order.
GROUP = [
    ("a" * 32, 0, 9, True),
    ("c" * 32, 1, 2, True),
    ("b" * 32, 1, 7, False),
    ("d" * 32, 2, 1, True),
]
ENQUEUE_ORDER = ["a" * 32, "b" * 32, "c" * 32, "d" * 32]


@pytest.mark.django_db(transaction=True)
def test_every_api_lists_a_group_in_the_same_enqueue_order() -> None:
    assert GROUP_ORDER == ("started", "id")
    for task_id, enqueued_s, stopped_s, success in sorted(GROUP, key=lambda row: row[2]):
        Task.objects.create(
            id=task_id, name=f"name-{task_id[0]}", func="math.floor", args=(), kwargs={},
            result=task_id[0], group="g", started=BASE + timedelta(seconds=enqueued_s),
            stopped=BASE + timedelta(seconds=stopped_s), success=success,
        )  # fmt: skip

    # Django's side...
    assert list(fetch_group("g").values_list("id", flat=True)) == ENQUEUE_ORDER
    assert [task.id for task in Task.get_task_group("g")] == ENQUEUE_ORDER
    assert Task.get_result_group("g", failures=True) == ["a", "b", "c", "d"]
    # ...and the engine's, on the same rows.
    assert [task.id for task in get_store().group_tasks("g")] == ENQUEUE_ORDER
    assert [task.id for task in EngineTask.get_task_group("g")] == ENQUEUE_ORDER
    assert engine_api.result_group("g", failures=True) == ["a", "b", "c", "d"]
    successes = [task_id for task_id in ENQUEUE_ORDER if task_id != "b" * 32]
    assert list(fetch_group("g", failures=False).values_list("id", flat=True)) == successes
    assert [task.id for task in get_store().group_tasks("g", failures=False)] == successes
