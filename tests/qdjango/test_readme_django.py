"""The README's Django blocks that run inside a project, run here as written.

The settings blocks are exercised by the project tests
(tests/examples/test_django_user_project.py); the ``send_mail`` block is a
fragment of a reader's view (its ``user`` and cached task are theirs).
"""

from __future__ import annotations

from django.contrib import admin

from qdjango import admin as q_admin
from qdjango import models as q_models
from tests.examples.test_readme import block


def test_the_import_list_imports() -> None:
    names: dict[str, object] = {}
    exec(block("from qdjango.tasks import ("), names)
    assert {"async_task", "Schedule", "OrmQ", "Stat", "Cluster", "Conf"} <= set(names)


def test_the_admin_customisation_replaces_the_failure_admin() -> None:
    try:
        names: dict[str, object] = {}
        exec(block("from django.contrib import admin"), names)
        registered = admin.site._registry[q_models.Failure]
        assert type(registered).__name__ == "FailureAdmin"
        assert "attempt_count" in registered.list_display
    finally:  # the project's admin as it was, for the other tests
        admin.site.unregister(q_models.Failure)
        admin.site.register(q_models.Failure, q_admin.FailAdmin)
