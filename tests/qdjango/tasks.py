"""Task functions and hooks the qdjango tests enqueue (importable by the cluster's workers).

Most are the spec's examples (chapters 1.4 to 1.15) with their module paths
made real; ``spool()`` is where code running inside a cluster leaves what
a test then reads (``QDJANGO_TEST_SPOOL``, set by the cluster fixture).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from django.core import management

from qdjango.tasks import async_iter, async_task, delete_group, result, result_group, schedule


def spool() -> Path:
    """The directory a cluster started by the tests writes its observations to."""
    return Path(os.environ["QDJANGO_TEST_SPOOL"])


def leave(kind: str, **data: Any) -> None:
    """Record one observation as its own file: processes write at once, never to one file."""
    path = spool() / f"{kind}-{uuid.uuid4().hex}.json"
    # Written aside, then renamed: a test globbing the spool never reads a half-written file.
    aside = path.with_suffix(".tmp")
    aside.write_text(json.dumps(data, default=repr))
    aside.rename(path)


def count_tasks() -> int:
    """Uses the ORM inside a worker: proves the worker called django.setup()."""
    from qdjango.models import Task

    return Task.objects.count()


# -- 1.4 Tasks: hooks --------------------------------------------------------------------


def print_result(task: Any) -> None:
    """The spec's ``hooks.print_result``; ``flush`` because a cluster's stdout is a file."""
    print(task.result, flush=True)


def record_result(task: Any) -> None:
    """A hook that leaves the task it got, for a test to check."""
    leave("hook", id=task.id, name=task.name, group=task.group, result=task.result)


# -- 1.8.3 Management commands ------------------------------------------------------------


def clear_sessions_command() -> Any:
    """The spec's wrapper of ``manage.py clearsessions``."""
    return management.call_command("clearsessions")


# -- 1.15.1 Emails --------------------------------------------------------------------------


def welcome_mail(user: Any) -> None:
    """The spec's welcome mail now and a follow-up in an hour (a ONCE schedule)."""
    from datetime import timedelta

    from django.utils import timezone

    from qdjango.models import Schedule

    msg = "Welcome to our website"
    # send this message right away
    async_task("django.core.mail.send_mail", "Welcome", msg, "from@example.com", [user.email])
    # and this follow up email in one hour
    msg = "Here are some tips to get you started..."
    schedule(
        "django.core.mail.send_mail", "Follow up", msg, "from@example.com", [user.email],
        schedule_type=Schedule.ONCE, next_run=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    # since the `repeats` defaults to -1
    # this schedule will erase itself after having run


# -- 1.15.2 Signals ---------------------------------------------------------------------------


def email_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """The spec's ``pre_save`` receiver: a changed email address informs everyone."""
    try:
        user = sender.objects.get(pk=instance.pk)
    except sender.DoesNotExist:
        pass  # new user
    else:
        # has his email changed?
        if not user.email == instance.email:  # noqa: SIM201  (the spec's code)
            # tell everyone
            async_task("tests.qdjango.tasks.inform_everyone", instance)


def inform_everyone(user: Any) -> None:
    """The spec's ``inform_everyone_async``: one mail task per other user."""
    from django.contrib.auth.models import User

    for u in User.objects.exclude(pk=user.pk):
        msg = f"Dear {u.username}, {user.username} has a new email address: {user.email}"
        async_task("django.core.mail.send_mail", "New email", msg, "from@example.com", [u.email])


# -- 1.15.3 Reports ---------------------------------------------------------------------------


def create_html_report(user: Any) -> str:
    """The spec's report generator; it reads the user's name, so a non-user makes it fail."""
    return f"We had a great quarter, {user.username}!"


def email_report(task: Any) -> None:
    """The spec's hook: mail the report, or tell the admins it failed."""
    if task.success:
        # Email the report (the spec passes the address alone; send_mail wants a list)
        async_task(
            "django.core.mail.send_mail", "The report you requested", task.result,
            "from@example.com", [task.args[0].email],
        )  # fmt: skip
    else:
        # Tell the admins something went wrong
        async_task("django.core.mail.mail_admins", "Report generation failed", task.result)


# -- 1.15.4 Haystack, without Haystack --------------------------------------------------------


def index_object(sender: Any, instance: Any) -> None:
    """Stands in for the spec's Haystack ``index_object``: the "index" is a spool entry."""
    leave("index", model=sender.__name__, pk=instance.pk, text=str(instance))


# -- 1.15.6 Groups: Parzen-window estimation (needs numpy) -----------------------------------


def parzen_estimation(x_samples: Any, point_x: Any, h: float) -> tuple[float, float]:
    """The spec's estimation function, unchanged."""
    import numpy

    k_n = 0
    for row in x_samples:
        x_i = (point_x - row[:, numpy.newaxis]) / h
        for row in x_i:  # noqa: PLW2901  (the spec's code)
            if numpy.abs(row) > (1 / 2):
                break
        else:
            k_n += 1
    return h, (k_n / len(x_samples)) / (h ** point_x.shape[1])


def _parzen_inputs(samples: int, widths: int) -> tuple[Any, Any, Any]:
    import numpy

    mu_vec = numpy.array([0, 0])
    cov_mat = numpy.array([[1, 0], [0, 1]])
    sample = numpy.random.multivariate_normal(mu_vec, cov_mat, samples)
    return sample, numpy.linspace(1.0, 1.2, widths), numpy.array([[0], [0]])


def parzen_async(samples: int = 10000, widths: int = 100) -> list[Any]:
    """The spec's group version; the sizes are parameters so a test can stay quick."""
    # clear the previous results
    delete_group("parzen", cached=True)
    sample, width_values, x = _parzen_inputs(samples, widths)
    # async_task them with a group label to the cache backend
    for w in width_values:
        async_task(parzen_estimation, sample, x, w, group="parzen", cached=True)
    # return after all results
    return result_group("parzen", count=widths, cached=True)


def parzen_iter(samples: int = 10000, widths: int = 100) -> list[Any]:
    """The spec's ``async_iter`` version of ``parzen_async``."""
    sample, width_values, x = _parzen_inputs(samples, widths)
    # async_task them with async_task iterable
    args = [(sample, x, w) for w in width_values]
    result_id = async_iter(parzen_estimation, args, cached=True)
    # return the cached result or timeout after a while
    collated: list[Any] = result(result_id, wait=60000, cached=True)
    return collated
