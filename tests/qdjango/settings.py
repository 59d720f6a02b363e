"""qdjango test settings: a SQLite file by default, PostgreSQL with QDJANGO_TEST_DB=postgres.

The test database is the database itself (TEST NAME = NAME), so clusters
started in subprocesses with these settings see what the tests write.
"""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "qdjango-tests-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.qdjango.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "qdjango",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Set once per test run (in the environment, so cluster subprocesses inherit them) and
# unique to the run, so that test runs at the same time keep out of each other's way.
os.environ.setdefault("QDJANGO_TEST_DB_NAME", f"qdjango_test_{os.getpid()}")
os.environ.setdefault(
    "QDJANGO_TEST_DB_FILE", os.path.join(tempfile.gettempdir(), f"qdjango-{os.getpid()}.db")
)
os.environ.setdefault("QDJANGO_TEST_CLUSTER", f"qdjango-{os.getpid()}")

_kind = os.environ.get("QDJANGO_TEST_DB", "sqlite")
if _kind == "postgres":
    _name = os.environ["QDJANGO_TEST_DB_NAME"]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _name,
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "TEST": {"NAME": _name},
        }
    }
else:
    _file = os.environ["QDJANGO_TEST_DB_FILE"]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _file,
            "TEST": {"NAME": _file},
            # A cluster shares this file with the tests: what check qdjango.W003 recommends.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": os.environ["QDJANGO_TEST_CLUSTER"],
    "workers": 2,
    "timeout": 30,
    "retry": 60,
    "poll": 0.05,
    "orm": "default",
    "label": "Django Q",
}
