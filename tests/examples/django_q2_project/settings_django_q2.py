"""The shop's django-q2 settings, appended to the settings.py that startproject wrote."""

import sys

# Under `manage.py test` tasks run inline, in the test's transaction.
TESTING = sys.argv[1:2] == ["test"]

Q_CLUSTER = {
    "name": "shop",
    "workers": 2,
    "timeout": 60,
    "retry": 120,
    "orm": "default",
    "sync": TESTING,
}
