"""A minimal Django project for django-q2: ``python -m django qcluster`` with this module.

Only ``django_q`` is installed; the database is a SQLite file in the run's
temporary folder (``migrate`` makes its tables first); the broker is Redis.
Q_CLUSTER: 2 workers, ``save_limit`` 0 (keep every success, as qengine's run),
logging at WARNING as for every system, the rest django-q2's defaults.
"""

from __future__ import annotations

import os

SECRET_KEY = "bench-peers"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_q"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(os.environ["PEERS_DIR"], "djq.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
Q_CLUSTER = {
    "name": os.environ["PEERS_NAME"],
    "workers": 2,
    "redis": os.environ["PEERS_BROKER_URL"],
    "save_limit": 0,
    "log_level": "WARNING",
}
