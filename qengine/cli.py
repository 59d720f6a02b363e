"""The ``qcluster`` and ``qinfo`` commands; the only place that sets up logging."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import QEngineError

# The runtime (SQLAlchemy, redis-py …) is imported where a command needs it, not here:
# every pool worker imports this module again as multiprocessing's main module, and
# must not pay for what only the cluster process uses.

__all__ = ["one_line", "qcluster_main", "qinfo_main"]

LOG_FORMAT = "%(asctime)s [Q] %(levelname)s %(message)s"


def one_line(exc: BaseException) -> str:
    """An error as one line for a command's stderr: a driver's reason may span several."""
    return " ".join(str(exc).split()) or type(exc).__name__


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The shared command line of qcluster, qinfo and qmonitor (``--config-file``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config-file",
        metavar="FILE",
        help="TOML file with configuration keys (default: $QENGINE_CONFIG)",
    )
    return parser


def qcluster_main(argv: list[str] | None = None) -> int:
    """Run a cluster in the foreground until SIGTERM or Ctrl+C."""
    parser = command_parser(
        "qcluster", "Run a qengine cluster: take tasks from the broker and run them."
    )
    parser.add_argument(
        "--run-once", action="store_true", help="process what is queued now, then stop"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, datefmt="%H:%M:%S")
    # Before the cluster's own imports (Redis, SQLAlchemy): the workers' fork server
    # starts as a copy of this process, and the smaller the copy, the less of it is
    # duplicated when the cluster's threads touch their pages (see cluster.forking).
    from .cluster.forking import fork_helpers
    from .cluster.pool import WORKER_MODULES

    fork_helpers(preload=WORKER_MODULES)
    try:
        from .cluster.cluster import Cluster
        from .health import check_servers
        from .runtime import get_config, set_config_file

        if args.config_file:
            set_config_file(args.config_file)
        config = get_config()
        check_servers(config)
        return Cluster(config, run_once=args.run_once).run()
    except QEngineError as exc:
        logging.getLogger("qengine").critical("cluster cannot start: %s", one_line(exc))
        return 2


def qinfo_main(argv: list[str] | None = None) -> int:
    """Print the clusters' summary, the configuration, the ids of running clusters or the health."""
    parser = command_parser("qinfo", "Show what qengine clusters are doing.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", action="store_true", help="print the effective configuration")
    group.add_argument("--ids", action="store_true", help="print the ids of running clusters")
    group.add_argument(
        "--health",
        action="store_true",
        help="print the health check as JSON; exit 0 when healthy, 1 otherwise (for probes)",
    )
    args = parser.parse_args(argv)
    try:
        from .runtime import get_config, set_config_file

        if args.config_file:
            set_config_file(args.config_file)
        config = get_config()
        if args.config:
            print(json.dumps(config.as_dict(masked=True), indent=2, default=str))
            return 0
        if args.health:
            from .health import health

            ok, body = health(config)
            print(json.dumps(body, indent=2))
            return 0 if ok else 1
        from .status import Stat, summary

        if args.ids:
            for stat in Stat.get_all(config):
                print(stat.cluster_id)
            return 0
        print("\n".join(summary(config).lines()))
        return 0
    except QEngineError as exc:
        print(f"qinfo: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # ``python -m qengine.cli`` runs a cluster, as tests do
    raise SystemExit(qcluster_main())
