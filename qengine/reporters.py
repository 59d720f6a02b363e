"""Error reporters: plugins that forward failed tasks to Sentry, Rollbar or any other service.

The ``error_reporter`` key maps a reporter name to its settings. A name is
looked up among the entry points of the group ``qengine.error_reporters``,
then among the built-in reporters (so ``sentry`` and ``rollbar`` work from a
source checkout whose entry points were never installed), then read as a
dotted class path. The class is built once per configuration with the
settings as keyword arguments; its ``report(failure)`` is called once for
every failed task, in the process that saves results (the cluster's monitor,
or the caller in sync mode), never in a worker.
"""

from __future__ import annotations

import atexit
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from .config import Config
from .errors import ConfigError
from .store import loads
from .task import Outcome, func_name

__all__ = [
    "BUILTIN_REPORTERS",
    "ENTRY_POINT_GROUP",
    "ErrorReporter",
    "FailureReport",
    "RollbarReporter",
    "SentryReporter",
    "build_reporters",
    "close_reporters",
    "report_failures",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qengine.error_reporters"
"""The entry point group in which packages register reporter classes."""

BUILTIN_REPORTERS: dict[str, tuple[str, str]] = {
    "sentry": ("qengine.reporters:SentryReporter", "sentry"),
    "rollbar": ("qengine.reporters:RollbarReporter", "rollbar"),
}
"""Reporters shipped with qengine: name → (object reference, extra that installs its library).

pyproject.toml registers the same references as entry points; this mapping is
the fallback for an install whose entry points are missing or stale.
"""

_ERROR_TYPE = re.compile(r"^[A-Za-z_][\w.]*(?=:)")


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureReport:
    """One failed task, as a reporter sees it.

    Arguments and keyword arguments are left out on purpose: they may hold
    secrets, and a reporter sends what it gets to a third party.
    """

    id: str
    """The task's id."""
    name: str
    """The task's name (given, or humanized from its id)."""
    func: str
    """Dotted path of the task's function."""
    error: str
    """The failure as stored: ``Type: message``, a blank line, then the traceback text."""
    attempt_count: int
    """Deliveries of the task so far, this one included."""
    group: str | None = None
    """The task's group, if any."""
    cluster: str | None = None
    """Name of the cluster the task was sent to."""
    started: datetime | None = None
    """When the run began (aware UTC)."""
    stopped: datetime | None = None
    """When the run ended (aware UTC)."""
    is_timeout: bool = False
    """True when the task was stopped for running past its timeout."""

    @property
    def summary(self) -> str:
        """The first line of ``error``, e.g. ``ValueError: boom``."""
        return self.error.split("\n", 1)[0]

    @property
    def error_type(self) -> str | None:
        """The exception's class name from ``summary``; None when the text names none."""
        match = _ERROR_TYPE.match(self.summary)
        return match.group(0) if match else None

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> FailureReport:
        """The report for a failed outcome (its result is the error text the worker stored)."""
        message = outcome.message
        error = loads(outcome.result_blob)
        return cls(
            id=message.id,
            name=message.name,
            func=func_name(message.func) or "",
            error=error if isinstance(error, str) else repr(error),
            attempt_count=message.attempt_count,
            group=message.group,
            cluster=message.cluster,
            started=outcome.started,
            stopped=outcome.stopped,
            is_timeout=outcome.timed_out,
        )


class ErrorReporter(Protocol):
    """What a reporter class provides, besides a constructor taking its settings as keywords.

    In a cluster ``report`` runs in the reporting thread, one failure at a
    time, after the result is saved (in sync mode, in the caller): a slow
    service delays only the reports behind it. An optional ``close()`` is
    called when the configuration is replaced, to flush and release
    connections.
    """

    def report(self, failure: FailureReport) -> None:
        """Send one failed task to the service; exceptions are logged and ignored."""


# -- built-in reporters -----------------------------------------------------------------


class SentryReporter:
    """Failed tasks as Sentry events, through a Sentry client of their own.

    The settings are ``sentry_sdk.Client`` options (``dsn``, ``environment``,
    ``release``, ``transport``…). The client is private rather than
    ``sentry_sdk.init()``'s global one, so an application that set up Sentry
    for itself keeps its own settings, and two configurations do not clash.
    ``default_integrations`` defaults to False: integrations patch the whole
    process (logging, threads) and would report through the global client.
    """

    def __init__(self, **settings: Any) -> None:
        import sentry_sdk

        settings.setdefault("default_integrations", False)
        # Any: the SDK types events as a TypedDict; ours is built as a plain dict.
        self.client: Any = sentry_sdk.Client(**settings)
        # A private client is not flushed by the SDK's own exit hook.
        atexit.register(self.close)

    def report(self, failure: FailureReport) -> None:
        event: dict[str, Any] = {
            "level": "error",
            "logger": "qengine",
            "message": f"task {failure.name} [{failure.id}] failed: {failure.summary}",
            "transaction": failure.func,
            # Group by function and error type: task names and ids differ on every run.
            "fingerprint": ["qengine", failure.func, failure.error_type or failure.summary],
            "tags": {"qengine.func": failure.func, "qengine.task_name": failure.name},
            "extra": _details(failure),
        }
        if failure.error_type:
            value = failure.summary[len(failure.error_type) + 1 :].strip()
            event["exception"] = {"values": [{"type": failure.error_type, "value": value}]}
        self.client.capture_event(event)

    def close(self) -> None:
        """Send what is queued and stop the client's transport thread."""
        atexit.unregister(self.close)
        self.client.close()


class RollbarReporter:
    """Failed tasks as Rollbar items, through pyrollbar.

    The settings are ``rollbar.init`` arguments (``access_token``,
    ``environment``, ``handler``, ``endpoint``…). pyrollbar keeps one
    process-wide client: the first ``access_token`` and ``environment`` win,
    later settings are merged in. ``allow_logging_basic_config`` defaults to
    False because a library must not install logging handlers.
    """

    def __init__(self, access_token: str, environment: str = "production", **settings: Any) -> None:
        import rollbar

        settings.setdefault("allow_logging_basic_config", False)
        rollbar.init(access_token, environment, **settings)
        self.rollbar = rollbar

    def report(self, failure: FailureReport) -> None:
        self.rollbar.report_message(
            f"task {failure.name} [{failure.id}] failed: {failure.summary}",
            level="error",
            extra_data=_details(failure),
            # Group by function and error type: task names and ids differ on every run.
            payload_data={
                "context": failure.func,
                "fingerprint": f"qengine:{failure.func}:{failure.error_type or failure.summary}",
            },
        )


def _details(failure: FailureReport) -> dict[str, Any]:
    return {
        "task_id": failure.id,
        "task_name": failure.name,
        "func": failure.func,
        "group": failure.group,
        "cluster": failure.cluster,
        "attempt_count": failure.attempt_count,
        "is_timeout": failure.is_timeout,
        "started": failure.started.isoformat() if failure.started else None,
        "stopped": failure.stopped.isoformat() if failure.stopped else None,
        "traceback": failure.error,
    }


# -- loading ----------------------------------------------------------------------------


def _install_hint(name: str) -> str:
    builtin = BUILTIN_REPORTERS.get(name)
    if builtin is not None:
        return f"pip install qengine[{builtin[1]}]"
    return "install the package that provides it"


def _find(name: str) -> EntryPoint:
    """The entry point to load for ``name``: installed, built in, or made from a class path."""
    for found in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return found
    if name in BUILTIN_REPORTERS:
        return EntryPoint(name, BUILTIN_REPORTERS[name][0], ENTRY_POINT_GROUP)
    if "." in name or ":" in name:
        if ":" not in name:
            module, _, attr = name.rpartition(".")
            name = f"{module}:{attr}"
        return EntryPoint(name, name, ENTRY_POINT_GROUP)
    known = sorted(set(BUILTIN_REPORTERS) | set(entry_points(group=ENTRY_POINT_GROUP).names))
    raise ConfigError(
        f"error_reporter: unknown reporter {name!r}; allowed: {', '.join(known)}, "
        f"another entry point of group {ENTRY_POINT_GROUP!r}, or a dotted class path"
    )


def _build(name: str, settings: Any) -> ErrorReporter:
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(
            f"error_reporter[{name!r}]: settings must be a dict of keyword arguments, "
            f"not {type(settings).__name__}"
        )
    found = _find(name)
    try:
        cls = found.load()
        reporter = cls(**settings)
    except ImportError as exc:
        # Raised by load() for a plugin's module, or by a constructor importing its library.
        raise ConfigError(
            f"error_reporter {name!r} cannot be loaded ({exc}); {_install_hint(name)}"
        ) from exc
    except AttributeError as exc:
        raise ConfigError(f"error_reporter {name!r}: no {found.value}: {exc}") from exc
    except Exception as exc:
        # Any error of a plugin's constructor is a configuration error, so that a cluster
        # refuses to start instead of failing at its first failed task. Only the keys are
        # named: the values are tokens and DSNs.
        raise ConfigError(
            f"error_reporter {name!r}: {found.value} rejected the settings "
            f"{sorted(settings)}: {exc}"
        ) from exc
    if not callable(getattr(reporter, "report", None)):
        raise ConfigError(f"error_reporter {name!r}: {found.value} has no report() method")
    return reporter  # type: ignore[no-any-return]


def build_reporters(config: Config) -> tuple[tuple[str, ErrorReporter], ...]:
    """The configured reporters by name (``qengine.runtime.get_reporters`` keeps them).

    Raises:
        ConfigError: a reporter is unknown, its library is not installed, or it
            rejected its settings; the message names the reporter and the fix.
    """
    built: list[tuple[str, ErrorReporter]] = []
    try:
        for name, settings in config.error_reporter.items():
            built.append((name, _build(name, settings)))
    except ConfigError:
        _close([reporter for _, reporter in built])  # no half-built set is kept
        raise
    return tuple(built)


def close_reporters(reporters: Sequence[tuple[str, ErrorReporter]]) -> None:
    """Let each reporter flush and release what it holds (the configuration is replaced)."""
    _close([reporter for _, reporter in reporters])


def report_failures(
    outcomes: Sequence[Outcome],
    config: Config,
    reporters: Callable[[Config], Sequence[tuple[str, ErrorReporter]]],
) -> None:
    """Send every failed outcome to every configured reporter.

    A failing reporter must not cost a result nor stop the monitor, so its
    errors, and a reporter that cannot be built, are logged here and go no further.
    """
    if not config.error_reporter:
        return
    failed = [o for o in outcomes if not o.success]
    if not failed:
        return
    try:
        built = reporters(config)
    except ConfigError as exc:
        # A cluster checks this at start; sync mode and embedded callers learn it here.
        log.error("failed tasks are not reported: %s", exc)
        return
    for outcome in failed:
        failure = FailureReport.from_outcome(outcome)
        for name, reporter in built:
            try:
                reporter.report(failure)
            except Exception:
                # Whatever the plugin does wrong, the batch goes on to be acknowledged.
                log.warning(
                    "error reporter %s failed to report task %s [%s]",
                    name, failure.name, failure.id, exc_info=True,
                )  # fmt: skip


def _close(reporters: Sequence[ErrorReporter]) -> None:
    for reporter in reporters:
        close = getattr(reporter, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                # Replacing the configuration must not fail on a plugin's cleanup.
                log.warning("error reporter %r failed to close", reporter, exc_info=True)
