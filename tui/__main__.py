"""The ``qmonitor`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Until the Textual monitor lands, say so and point to ``qinfo``."""
    print(
        "qmonitor: not yet - the Textual monitor is still to be built; use qinfo", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
