"""Schedules: what to call and when, stored in ``q_schedule``, and the slots they run at.

One module per concern, lowest first; none imports one above it:

- ``recurrence``: the schedule types and the maths of next runs (pure: no
  store, no configuration; time, months and DST are explained there);
- ``rows``: the rules a stored schedule obeys, and rows to values and back;
- ``model``: the ``Schedule`` model, ``schedule()`` and reading, saving and
  deleting rows;
- ``claim``: the scheduler thread's transaction (``claim_due``,
  ``seconds_until_due``) and the task ids of slots.

Every name is re-exported here, so ``from qengine.schedules import X`` does
not depend on which module owns ``X``. No threads live here.
"""

from __future__ import annotations

# The public names, and (``x as x``: re-exported) the internal ones the single module had.
from .claim import Claim, Enqueue, claim_due, seconds_until_due, slot_task_id
from .claim import _claim_one as _claim_one
from .model import Schedule, check_values, first_run, schedule
from .model import _from_row as _from_row
from .recurrence import Advance, ScheduleType, advance, next_run_after
from .recurrence import _cron_after as _cron_after
from .rows import _to_row as _to_row
from .rows import _to_utc as _to_utc
from .rows import _validate as _validate

__all__ = [
    "Advance",
    "Claim",
    "Enqueue",
    "Schedule",
    "ScheduleType",
    "advance",
    "check_values",
    "claim_due",
    "first_run",
    "next_run_after",
    "schedule",
    "seconds_until_due",
    "slot_task_id",
]
