"""The ``qmonitor`` command: ``qmonitor [--config-file FILE]``."""

from __future__ import annotations

import sys

from qengine.cli import command_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Open the monitor on the configured broker and store; return the exit status."""
    parser = command_parser(
        "qmonitor",
        "Watch qengine clusters, tasks, failures, schedules and the queue. "
        "Keys: 1-4 switch tabs, Enter opens a task, q quits.",
    )
    args = parser.parse_args(argv)
    try:
        from .app import QMonitorApp
    except ImportError as exc:  # textual is an extra; say how to get it
        print(f"qmonitor: {exc}; install it with: pip install 'qengine[tui]'", file=sys.stderr)
        return 2
    from .source import Source, SourceError

    try:
        source = Source.open(args.config_file)
    except SourceError as exc:
        print(f"qmonitor: {exc}", file=sys.stderr)
        return 2
    QMonitorApp(source).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
