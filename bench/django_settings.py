"""Django settings of the benchmark's Django run: qdjango's tables on PostgreSQL, a Redis broker.

``bench/throughput.py`` starts ``python -m django qcluster`` (and ``migrate``)
with ``DJANGO_SETTINGS_MODULE=bench.django_settings`` and hands over, in the
environment, the database it created for the run and the cluster keys the
plain-engine run uses, so both runs share one set of cluster settings.
Reading the environment here is what a settings module is for; the library
itself still reads nothing at import time.

Environment:
    BENCH_DJANGO_DATABASE: JSON of ``DATABASES['default']``'s NAME, USER,
        PASSWORD, HOST, PORT.
    BENCH_Q_CLUSTER: JSON of ``Q_CLUSTER`` (name, secret_key, broker, workers…).
    BENCH_CONN_MAX_AGE: ``CONN_MAX_AGE`` in seconds, or ``none`` for unlimited;
        default 0, Django's own default, as most projects leave it.
    BENCH_SERVER_SIDE_BINDING: ``1`` sets ``OPTIONS['server_side_binding']``
        (psycopg 3); default off, Django's default: client-side binding.
    BENCH_PREPARE_THRESHOLD: ``OPTIONS['prepare_threshold']`` (psycopg 3, with
        server-side binding); default unset, Django's default: never prepare.
"""

from __future__ import annotations

import json
import os

DEBUG = False  # with DEBUG every query is kept in connection.queries: memory and time
SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["qdjango"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

_max_age = os.environ.get("BENCH_CONN_MAX_AGE", "0")
_options: dict[str, object] = {}
if os.environ.get("BENCH_SERVER_SIDE_BINDING") == "1":
    _options["server_side_binding"] = True
if os.environ.get("BENCH_PREPARE_THRESHOLD"):
    _options["prepare_threshold"] = int(os.environ["BENCH_PREPARE_THRESHOLD"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **json.loads(os.environ["BENCH_DJANGO_DATABASE"]),
        "CONN_MAX_AGE": None if _max_age.lower() == "none" else int(_max_age),
        "OPTIONS": _options,
    }
}

Q_CLUSTER = json.loads(os.environ["BENCH_Q_CLUSTER"])
