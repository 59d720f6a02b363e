"""qengine against its peers (Huey, Dramatiq, Celery, RQ, django-q2): see README.md and run.py.

A package so that qengine's cluster can import ``bench.peers.tasks_qengine``; the
peers' workers import the ``tasks_*`` modules as top-level modules of this folder.
"""
