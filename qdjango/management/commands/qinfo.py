"""``manage.py qinfo``: the clusters' summary, the configuration or the running clusters' ids."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from qengine.cli import one_line
from qengine.config import Config, mask_url
from qengine.errors import QEngineError
from qengine.runtime import get_config

MASK = "********"

_SECRET_WORDS = ("password", "passwd", "secret", "token", "dsn", "api_key", "apikey", "credential")
"""Parts of a key name whose value is a secret (``error_reporter`` holds Sentry DSNs, Rollbar
tokens…); the engine's own mask covers the secret key and URL passwords only."""


def mask_secrets(value: Any, key: str = "") -> Any:
    """``value`` with secrets hidden at any depth: by key name, and passwords inside URLs."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if value and any(word in key.lower() for word in _SECRET_WORDS):
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def config_text(config: Config) -> str:
    """The effective configuration as JSON, safe to paste into an issue or a log.

    The engine masks the secret key and URL passwords; this also masks
    secrets nested in dicts, and, so that ``SECRET_KEY`` can never leak through
    a key we did not foresee, blanks its value wherever it still appears.
    """
    text = json.dumps(mask_secrets(config.as_dict(masked=True)), indent=2, default=str)
    for secret in {config.secret_key, getattr(settings, "SECRET_KEY", None)}:
        if secret:
            text = text.replace(secret, MASK)
    return text


class Command(BaseCommand):
    help = "Show what the clusters are doing: the summary, the configuration or the cluster ids."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--config",
            action="store_true",
            help="print the effective configuration, secrets masked",
        )
        group.add_argument("--ids", action="store_true", help="print the ids of running clusters")
        group.add_argument(
            "--health",
            action="store_true",
            help="print the health check as JSON; exit 0 when healthy, 1 otherwise (for probes)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = get_config()
            if options["config"]:
                self.stdout.write(config_text(config))
                return
            if options["health"]:
                self._health(config)
                return
            from qengine.status import Stat, summary

            if options["ids"]:
                for stat in Stat.get_all(config):
                    self.stdout.write(str(stat.cluster_id))
                return
            self.stdout.write("\n".join(summary(config).lines()))
        except QEngineError as exc:
            # One line naming the server and what to check: a driver's reason may span several.
            raise CommandError(one_line(exc)) from exc

    def _health(self, config: Config) -> None:
        from qengine.health import health

        ok, body = health(config)
        self.stdout.write(json.dumps(body, indent=2))
        if not ok:
            raise CommandError("unhealthy", returncode=1)
