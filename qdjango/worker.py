"""What a worker process of a Django cluster runs first: Django's own set-up."""

from __future__ import annotations


def setup_django() -> None:
    """Set Django up in a fresh worker, so tasks can use the ORM, settings and apps.

    Under ``manage.py qcluster`` workers are forked from a copy of the
    configured cluster and this only re-reads the logging settings; a
    worker started fresh (spawn, or a fork server the stdlib started) sets
    Django up from ``DJANGO_SETTINGS_MODULE``, inherited from the parent.
    """
    import django

    django.setup()
