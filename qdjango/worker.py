"""What a worker process of a Django cluster runs first: Django's own set-up."""

from __future__ import annotations


def setup_django() -> None:
    """Set Django up in a fresh worker, so tasks can use the ORM, settings and apps.

    Workers start from a fork server or by spawn, not as copies of a
    configured parent; ``DJANGO_SETTINGS_MODULE`` comes from the parent's
    environment.
    """
    import django

    django.setup()
