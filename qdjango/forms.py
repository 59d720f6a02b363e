"""The admin's schedule form: the engine's schedule rules as errors beside each field."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from qengine.errors import ScheduleError
from qengine.schedules import check_values

from .models import Schedule

__all__ = ["ScheduleForm"]

# A schedule the engine accepts. Each field is checked in a copy of it, alone or with the
# schedule type, so an error belongs to that field by construction and every field's error
# shows at once (the engine stops at the first one it finds).
_ACCEPTED: dict[str, Any] = {
    "id": 0, "func": "math.floor", "schedule_type": Schedule.ONCE, "repeats": -1,
}  # fmt: skip

# The field a schedule type reads besides its letter; the engine ignores it for other types.
_TYPE_FIELD = {Schedule.MINUTES: "minutes", Schedule.CRON: "cron"}

# The engine names the stored row it could not read ("schedule 7: args '(' is not a
# literal"); on a form the row is the one being edited, so the prefix only confuses.
_ROW_PREFIX = re.compile(r"^schedule \S+: ")


def _message(exc: ScheduleError) -> str:
    return _ROW_PREFIX.sub("", str(exc))


def _error(values: dict[str, Any]) -> str | None:
    """The engine's objection to ``values`` put in an accepted schedule, if any."""
    try:
        check_values({**_ACCEPTED, **values})
    except ScheduleError as exc:
        return _message(exc)
    return None


class ScheduleForm(forms.ModelForm):
    """A schedule checked with ``qengine.schedules.check_values``, as ``schedule()`` checks it.

    ``Schedule.save()`` checks too and raises ``ScheduleError``; checking in
    ``clean()`` first turns that into messages beside the fields instead of
    a server error.
    """

    class Meta:
        model = Schedule
        fields = [
            "name", "func", "hook", "args", "kwargs", "schedule_type", "minutes", "cron",
            "repeats", "next_run", "cluster",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Empty means "now" (or the first cron time): Schedule.save() fills it in.
        next_run = self.fields["next_run"]
        next_run.required = False
        next_run.help_text = _("Leave empty to run first now, or at the first cron time.")

    def clean(self) -> dict[str, Any]:
        # A field missing from cleaned_data failed Django's own checks, which said why.
        cleaned: dict[str, Any] = super().clean() or {}
        fields = self._meta.fields or ()
        checks = [
            (field, {field: cleaned[field]})
            for field in fields
            if field in cleaned and field not in {"schedule_type", *_TYPE_FIELD.values()}
        ]
        kind = cleaned.get("schedule_type")
        if kind is not None:
            field = _TYPE_FIELD.get(kind, "schedule_type")
            if field in cleaned:
                checks.append((field, {"schedule_type": kind, field: cleaned[field]}))
        for field, values in checks:
            if (error := _error(values)) is not None:
                self.add_error(field, error)
        if self.errors:
            return cleaned
        # The whole schedule too: what no form field holds (q_options, written by a program)
        # and any rule that reads several fields.
        values = self.instance.as_values()
        values.update({field: cleaned.get(field) for field in fields})
        try:
            check_values(values)
        except ScheduleError as exc:
            self.add_error(None, _message(exc))
        return cleaned
