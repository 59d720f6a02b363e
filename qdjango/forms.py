"""The admin's schedule form: the engine's schedule rules as form errors, not server errors."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from qengine.errors import ScheduleError
from qengine.schedules import check_values

from .models import Schedule

__all__ = ["ScheduleForm"]

# Columns an engine message can be about, as the engine names them; all but q_options
# (not on the form) are form fields.
_FIELDS = (
    "func", "hook", "name", "cluster", "schedule_type", "minutes", "cron", "repeats",
    "args", "kwargs", "next_run", "q_options",
)  # fmt: skip
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def field_of(message: str) -> str | None:
    """The form field an engine ``ScheduleError`` message is about, if one can be told.

    The engine names the offending field in its message ("func 'x' is not a
    dotted path", "a MINUTES schedule needs minutes >= 1"); the field named
    first wins. Quoted parts are the user's values, so they are left out: a
    cron expression or an argument may contain any word.
    """
    text = _QUOTED.sub("", message).replace("schedule type", "schedule_type")
    found = [
        (match.start(), field)
        for field in _FIELDS
        if (match := re.search(rf"\b{field}\b", text)) is not None
    ]
    field = min(found)[1] if found else None
    return None if field == "q_options" else field


class ScheduleForm(forms.ModelForm):
    """A schedule checked with ``qengine.schedules.check_values``, as ``schedule()`` checks it.

    ``Schedule.save()`` checks too and raises ``ScheduleError``; checking in
    ``clean()`` first turns that into a message beside the field instead of
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
        cleaned: dict[str, Any] = super().clean() or {}
        if self.errors:
            # A field already failed Django's own checks; the engine would only repeat it.
            return cleaned
        values = self.instance.as_values()
        values.update({field: cleaned.get(field) for field in self._meta.fields or ()})
        try:
            check_values(values)
        except ScheduleError as exc:
            self.add_error(field_of(str(exc)), str(exc))
        return cleaned
