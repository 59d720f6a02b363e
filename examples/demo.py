"""The demo: real tasks on the embedded default (one SQLite file as broker and store).

Run it with ``./scripts/demo``. It uses a throwaway SQLite file under
``.demo/`` so it never touches a project's own data.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import qengine  # noqa: E402


def report(task: qengine.Task) -> None:
    """A hook: called with the finished task."""
    print(f"  hook: {task.func}{task.args} -> {task.result!r}")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="   log %(levelname)s: %(message)s")
    workdir = HERE.parent / ".demo"
    workdir.mkdir(exist_ok=True)
    qengine.configure(store=f"sqlite:///{workdir}/demo.sqlite3", sync=True)

    print("A task, its stored result and its record:")
    task_id = qengine.async_task("math.copysign", 2, -2, hook=report)
    task = qengine.fetch(task_id)
    print(
        f"  {task.name}: result={task.result} success={task.success} "
        f"took {task.time_taken() * 1000:.2f} ms"
    )

    print("A group of four:")
    qengine.delete_group("demo-modf", tasks=True)
    for i in range(4):
        qengine.async_task(math.modf, i + 0.5, group="demo-modf")
    print("  ", qengine.result_group("demo-modf", count=4))

    print("An iterable, collated in order:")
    print("  ", qengine.result(qengine.async_iter("math.floor", [1.5, 2.5, 3.5])))

    print("A chain, one link after the other:")
    chain = qengine.Chain()
    chain.append("math.copysign", 1, -1)
    chain.append("math.floor", 1.5)
    chain.run()
    print(f"   {chain.result()} ({chain.current()} of {chain.length()} done)")

    print("A failing task is stored as a failure with its error:")
    failed = qengine.fetch(qengine.async_task("my.buggy.code"))
    print(f"   success={failed.success}: {failed.result.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
