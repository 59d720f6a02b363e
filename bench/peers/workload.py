"""The task bodies every system runs: each ``tasks_*`` module wraps these same functions.

Sharing the bodies is what makes the systems comparable: any difference in the
figures is the queue's, not the task's. Only the standard library is used here,
because both virtual environments import this module.
"""

from __future__ import annotations

import base64
import random

PAYLOAD_BYTES = 10_240
SPIN = 50_000
"""Loop turns of ``realistic``: about 3 ms of CPU on the 2-core benchmark machine.

A fixed amount of work rather than a fixed time, so a busy machine makes every
system's task slower alike instead of hiding its own slowness.
"""


def payload() -> str:
    """The 10 KB argument of ``realistic``: random text, so a queue that compresses wins nothing."""
    raw = random.Random(20_240).randbytes(PAYLOAD_BYTES * 3 // 4)
    return base64.b64encode(raw).decode()


def noop(*args: object) -> int:
    """The no-op task. Returns 1, not None: Huey stores no None result by default."""
    return 1


def realistic(data: str) -> str:
    """Burn a few ms of CPU, then return a 10 KB result (the argument reversed)."""
    total = 0
    for i in range(SPIN):
        total += i * i
    return data[::-1] if total else data


def expected(workload: str, data: str) -> object:
    """What one task of ``workload`` returns: the round trips check every result against it."""
    return realistic(data) if workload == "realistic" else noop()
