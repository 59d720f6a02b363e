"""qdjango: qengine as a Django app (settings, models, admin, commands, signals, cache).

Add ``"qdjango"`` to ``INSTALLED_APPS`` and ``python manage.py migrate``;
configure it with ``Q_CLUSTER`` in the settings, as with django_q.
"""
