"""``manage.py qcluster``: run a cluster with the project's settings until SIGTERM or Ctrl+C."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from qdjango.conf import in_memory
from qdjango.db import alias_of
from qengine.cli import LOG_FORMAT, one_line
from qengine.errors import QEngineError
from qengine.health import check_servers
from qengine.runtime import get_config


class Command(BaseCommand):
    help = "Run a cluster: take tasks from the broker and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--run-once", action="store_true", help="process what is queued now, then stop"
        )
        parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(
            level=options["log_level"].upper(), format=LOG_FORMAT, datefmt="%H:%M:%S"
        )
        from qdjango.cluster import Cluster

        config = get_config()
        for url in {config.store, config.broker_url}:
            alias = alias_of(url)
            if alias is not None and in_memory(alias):
                raise CommandError(
                    f"Django database {alias!r} is an in-memory SQLite database: only this "
                    "process could see it, so a cluster would run tasks nobody queued. Give it "
                    "a file (DATABASES NAME), or use sync mode (Q_CLUSTER['sync'] = True) "
                    "where no cluster runs, as in tests."
                )
        try:
            check_servers(config)
            status = Cluster(config, run_once=options["run_once"]).run()
        except QEngineError as exc:
            raise CommandError(f"cluster cannot start: {one_line(exc)}") from exc
        if status:
            raise CommandError(f"cluster stopped with status {status}", returncode=status)
