"""djq_settings.py with django-q2's ORM broker: the queue is a table of the same SQLite file.

For ``django-q2-orm``, the peer of qengine's embedded default (queue and results
in one SQLite file). Everything else is djq_settings.py's, read from the same
variables: only ``django_q`` installed, the database in the run's temporary
folder (``migrate`` makes ``django_q_ormq``, the queue's table, with the
rest), 2 workers, ``save_limit`` 0, logging at WARNING; ``"orm": "default"``
takes the place of ``"redis"``, and the rest (``poll`` 0.2 s) is django-q2's
defaults. A module of its own because a process sets up one settings module.
"""

from __future__ import annotations

import os

from djq_settings import DATABASES, DEBUG, DEFAULT_AUTO_FIELD, INSTALLED_APPS, SECRET_KEY, USE_TZ

__all__ = ["DATABASES", "DEBUG", "DEFAULT_AUTO_FIELD", "INSTALLED_APPS", "Q_CLUSTER", "SECRET_KEY",
           "USE_TZ"]  # fmt: skip

Q_CLUSTER = {
    "name": os.environ["PEERS_NAME"],
    "workers": 2,
    "orm": "default",
    "save_limit": 0,
    "log_level": "WARNING",
}
