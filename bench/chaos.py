"""Chaos runs: real clusters under faults, checked against a ledger the tasks keep themselves.

Each scenario runs on each broker with real ``qcluster`` subprocesses:

  baseline         no fault
  worker-kill      a random worker SIGKILLed every 0.5-2 s until the queue is drained
  cluster-kill     the whole cluster (its process group) SIGKILLed and restarted, several times
  broker-restart   Redis: the private redis-server (AOF, appendfsync always) SIGKILLed and
                   restarted; PostgreSQL: every connection cut at the proxy for 1 s (the
                   shared server itself is never restarted)
  redis-nopersist  Redis only: a redis-server that keeps nothing, killed with a backlog; the
                   checker must report loss (this proves it can fail)
  store-outage     the store's database unreachable (cut at the proxy) for ``--outage-s``,
                   a worker SIGKILLed halfway through; on PostgreSQL the broker is that
                   database too
  suicide          tasks that SIGKILL their own worker every time, among ordinary ones: given
                   up after ``max_attempts`` and stored as failures saying so
  schedules        three clusters sharing many ONCE schedules a fraction of a second apart,
                   one of them SIGKILLed and restarted now and then: every slot fires once
  sigterm          SIGTERM under load, several times: each stop drains cleanly (exit 0)

Redis runs use a private ``redis-server`` on a free port with its own
directory; every run keeps its store (and on PostgreSQL its broker) in a
schema of the shared ``test`` database made for the run (``search_path``)
and dropped after it, so no other user's tables or truncations meet ours.
Every task records its execution in a ledger on the shared Redis
(``bench.chaos_tasks``), under a key made for the run and deleted after it;
the checker compares the ledger with what ``async_task`` accepted and with
the store's rows, never with the engine's own counters.

Figures per run: enqueued (``async_task`` returned), executions (ledger),
lost (enqueued, never executed), duplicates (executions beyond one per task),
stored (rows in the run's store), recover (seconds from the end of a fault
until the outstanding work moved again: a new execution, a new stored
result; the worst fault of the run), drain (seconds from the last enqueue,
or the last slot due, until everything was executed and stored).

Usage: ``.venv/bin/python bench/chaos.py [--tasks 1000] [--scenario NAME ...]
[--broker redis|postgres ...] [--outage-s 10] [--task-ms 5] [--seed N] [--notes]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from qengine.db import ScheduleRow, TaskRow  # noqa: E402
from qengine.schedules import Schedule, schedule  # noqa: E402
from tests.chaos.rig import RECORD, REDIS_URL, SLOT, SUICIDE, Plan, Run  # noqa: E402

__all__ = ["BROKERS", "SCENARIOS", "Figures", "Plan", "promises", "run_scenario"]

BROKERS = ("redis", "postgres")
SCENARIOS = (
    "baseline", "worker-kill", "cluster-kill", "broker-restart", "redis-nopersist",
    "store-outage", "suicide", "schedules", "sigterm",
)  # fmt: skip
REDIS_ONLY = frozenset({"redis-nopersist"})
NO_DUPLICATES = frozenset({"baseline", "sigterm"})
"""Scenarios without crashes or expired leases: a second execution there breaks the promise."""
NOTES = ROOT / "bench" / "NOTES.md"


@dataclass(slots=True, kw_only=True)
class Figures:
    """What one run did, from the ledger and the store; ``broken`` lists unkept promises."""

    scenario: str
    broker: str
    enqueued: int = 0
    refused: int = 0
    """``async_task`` calls that raised (an outage): not enqueued, not expected to run."""
    refused_by: list[str] = field(default_factory=list)
    """The kinds of exception those calls raised."""
    executions: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    """Executions of tasks whose ``async_task`` raised (the enqueue landed, its reply did not)."""
    stored: int = 0
    missing_results: int = 0
    failed_results: int = 0
    """Tasks expected to succeed whose stored row is a failure."""
    faults: int = 0
    """Faults injected: kills, restarts, cuts, outages, SIGTERMs, suicide tasks."""
    recover_s: list[float | None] = field(default_factory=list)
    drain_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    @property
    def worst_recover(self) -> str:
        if not self.recover_s:
            return "-"
        if None in self.recover_s:
            return "never"
        return f"{max(r for r in self.recover_s if r is not None):.2f}"


# -- the checker -----------------------------------------------------------------------


def check(run: Run, settled_at: float, *, drain_from: float | None = None) -> Figures:
    """Count from the ledger and the store what became of every task that was enqueued."""
    fig = Figures(scenario=run.scenario, broker=run.broker_kind)
    enqueued = run.enqueued()
    counts = run.ledger.executions()
    rows = run.stored_rows()
    fig.enqueued = len(enqueued)
    fig.refused = sum(len(p.refused) for p in run.producers)
    fig.executions = sum(counts.values())
    fig.lost = sum(1 for n in enqueued if not counts.get(n))
    fig.duplicates = sum(c - 1 for c in counts.values() if c > 1)
    fig.unexpected = sum(c for n, c in counts.items() if n not in enqueued)
    fig.stored = len(rows)
    fig.missing_results = sum(1 for task_id in enqueued.values() if task_id not in rows)
    fig.failed_results = sum(
        1 for task_id in enqueued.values() if task_id in rows and not rows[task_id][0]
    )  # fmt: skip
    began = drain_from if drain_from is not None else run.production_end()
    fig.drain_s = max(0.0, settled_at - began)
    fig.recover_s = run.recoveries()
    fig.refused_by = sorted({kind for p in run.producers for kind in p.errors})
    return fig


def promises(fig: Figures) -> list[str]:
    """The delivery promise of this scenario: the list of what was not kept."""
    broken = list(fig.broken)
    if fig.scenario == "redis-nopersist":
        if fig.lost == 0:
            broken.append("no loss reported after Redis lost its data: the checker is blind")
        return broken
    if fig.lost:
        broken.append(f"{fig.lost} enqueued task(s) never executed")
    if fig.missing_results:
        broken.append(f"{fig.missing_results} task(s) without a stored result")
    if fig.failed_results:
        broken.append(f"{fig.failed_results} task(s) stored as failures")
    if fig.duplicates and fig.scenario in NO_DUPLICATES:
        broken.append(f"{fig.duplicates} duplicate execution(s) without any crash")
    if None in fig.recover_s:
        broken.append("no progress after a fault")
    return broken


def finish(run: Run, faults: int, *notes: str) -> Figures:
    """Wait until every enqueued task ran and was stored (or nothing moves), then count."""
    fig = check(run, run.settle(run.all_done))
    fig.faults = faults
    fig.notes.extend(notes)
    return fig


# -- scenarios -------------------------------------------------------------------------


def baseline(run: Run) -> Figures:
    run.start_cluster()
    run.produce(range(run.plan.tasks)).join()
    return finish(run, 0)


def worker_kill(run: Run) -> Figures:
    cluster = run.start_cluster()
    run.produce(range(run.plan.tasks))
    kills = 0
    while not run.drained():
        time.sleep(run.rng.uniform(0.5, 2.0))
        # Only with work outstanding, so the kill lands on something (a short run idles).
        if not run.wait_busy():
            continue
        if run.kill_worker(cluster):
            kills += 1
            run.fault_end()
    return finish(run, kills, f"{kills} workers killed")


def cluster_kill(run: Run) -> Figures:
    cluster = run.start_cluster()
    began = time.monotonic()
    run.produce(range(run.plan.tasks))
    for moment in run.fault_times(began):
        run.sleep_until(moment)
        cluster.kill()
        time.sleep(0.3)
        cluster = run.start_cluster(wait=False)
        run.fault_end()
        cluster.wait_running(60)
    return finish(run, run.plan.faults, f"{run.plan.faults} cluster kills")


def broker_restart(run: Run) -> Figures:
    run.start_cluster()
    began = time.monotonic()
    run.produce(range(run.plan.tasks))
    for moment in run.fault_times(began):
        run.sleep_until(moment)
        if run.redis is not None:
            run.redis.kill()
            time.sleep(0.5)
            run.redis.start()
        else:
            assert run.proxy is not None
            run.proxy.cut()
            time.sleep(1.0)
            run.proxy.restore()
        run.fault_end()
    what = "Redis restarts (AOF always)" if run.redis is not None else "1 s connection cuts"
    return finish(run, run.plan.faults, f"{run.plan.faults} {what}")


def redis_nopersist(run: Run) -> Figures:
    """A backlog in a Redis that keeps nothing, then a kill: the checker must see the loss.

    Half the tasks are queued before the cluster starts and Redis is killed as soon
    as the first one ran; the other half is queued after the restart, and all of
    those must run (the cluster gets over its queue vanishing).
    """
    assert run.redis is not None
    plan = run.plan
    half = max(plan.tasks // 2, 10)
    # Slow tasks in the backlog, so a small run still has one when Redis dies.
    run.plan = replace(plan, task_ms=max(plan.task_ms, 50.0))
    run.produce(range(half), rate=10_000).join()
    run.plan = plan
    run.start_cluster()
    while run.sample().executions < 1:
        time.sleep(0.01)
    backlog = run.broker.queue_size()
    run.redis.kill()
    time.sleep(0.3)
    run.redis.start()
    run.fault_end()
    after = run.produce(range(half, 2 * half))
    after.join()
    fig = finish(run, 1, f"killed with {backlog} queued")
    executed = run.ledger.executed()
    late = [n for n in after.ids if n not in executed]
    if late:
        fig.broken.append(f"{len(late)} task(s) enqueued after the restart never ran")
    return fig


def store_outage(run: Run) -> Figures:
    """The store unreachable for a while, and halfway through a worker killed.

    The kill comes while the monitor is stuck retrying the store, so the guard replaces
    the pool before the monitor hears of it: a path that used to run finished tasks
    again and then replace the new, healthy pool as well.
    """
    assert run.proxy is not None
    plan = run.plan
    cluster = run.start_cluster()
    began = time.monotonic()
    # Production goes on for a second after the outage, so the recovery meets new work too.
    run.produce(range(plan.tasks), span_s=max(plan.production_s, 1 + plan.outage_s + 1))
    run.sleep_until(began + 1)
    run.wait_busy()  # cut with results in flight
    run.proxy.cut()
    time.sleep(plan.outage_s / 2)
    killed = run.kill_worker(cluster)
    time.sleep(plan.outage_s / 2)
    run.proxy.restore()
    run.fault_end()
    fig = finish(
        run, 1 + killed, f"store unreachable {plan.outage_s:g} s, {killed} worker killed in it"
    )
    if run.redis is not None and fig.duplicates > killed * plan.workers:
        # Leases stay renewed (Redis is up): only the tasks running when the pool broke
        # may run twice, at most one per worker.
        fig.broken.append(f"{fig.duplicates} duplicates after one pool break")
    return fig


def suicide(run: Run) -> Figures:
    plan = run.plan
    run.start_cluster(max_attempts=plan.max_attempts)
    items = [(n, RECORD) for n in range(plan.tasks)]
    suicides = list(range(plan.tasks, plan.tasks + plan.suicides))
    # In the first half, so their deaths and retries overlap the rest of the production.
    for k, number in enumerate(suicides):
        items.insert((k + 1) * len(items) // (2 * len(suicides) + 2), (number, SUICIDE))
    run.produce(items=items)
    fig = finish(run, len(suicides))
    enqueued, counts, rows = run.enqueued(), run.ledger.executions(), run.stored_rows()
    runs = [counts.get(n, 0) for n in suicides if n in enqueued]
    given_up = 0
    for number in suicides:
        task_id = enqueued.get(number)
        if task_id is None or task_id not in rows:
            continue  # not enqueued, or counted as missing already
        success, reason = rows[task_id]
        if success or "died" not in str(reason):
            fig.broken.append(f"suicide task {number} stored as {success}: {str(reason)[:80]!r}")
        else:
            given_up += 1
            fig.failed_results -= 1  # this failure is the promise
    if any(r != plan.max_attempts for r in runs):
        fig.broken.append(f"suicide tasks ran {runs} times, not {plan.max_attempts} each")
    # Their runs up to max_attempts are what the setting allows, not duplicates.
    fig.duplicates -= sum(min(r, plan.max_attempts) - 1 for r in runs if r)
    fig.notes.append(f"{given_up}/{len(suicides)} suicides given up after {sorted(set(runs))} runs")
    return fig


def schedules(run: Run) -> Figures:
    """Three clusters, many ONCE slots, one cluster killed now and then: each slot fires once."""
    plan = run.plan
    clusters = [run.start_cluster(wait=False, workers=1) for _ in range(3)]
    for cluster in clusters:
        cluster.wait_running(60)
    lead_s = 1.0
    first = datetime.now(UTC) + timedelta(seconds=lead_s)
    for slot in range(plan.slots):
        schedule(
            SLOT, REDIS_URL, run.key, slot,
            name=f"{run.id}-{slot}", schedule_type=Schedule.ONCE,
            next_run=first + timedelta(seconds=slot * plan.slot_gap_s),
        )  # fmt: skip
    # Creating them took a while: measure the slots' due times from what was stored.
    offset = time.monotonic() - datetime.now(UTC).timestamp()
    run.due_at = [first.timestamp() + offset + k * plan.slot_gap_s for k in range(plan.slots)]
    kills = 0
    while time.monotonic() < run.due_at[-1]:
        time.sleep(run.rng.uniform(1.0, 2.0))
        index = run.rng.randrange(len(clusters))
        clusters[index].kill()
        kills += 1
        time.sleep(0.3)
        clusters[index] = run.start_cluster(wait=False, workers=1)
        run.fault_end()

    def schedules_left() -> int:
        with run.checker.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(ScheduleRow)) or 0)

    def done() -> bool:
        fired = run.ledger.fired()
        if len(fired) < plan.slots or schedules_left():
            return False
        with run.checker.connect() as conn:
            stored = set(conn.scalars(sa.select(TaskRow.id)))
        return all(set(ids) <= stored for ids in fired.values())

    fig = check(run, run.settle(done), drain_from=run.due_at[-1])
    fig.faults = kills
    fired, rows = run.ledger.fired(), run.stored_rows()
    fig.enqueued = plan.slots
    fig.executions = sum(sum(ids.values()) for ids in fired.values())
    fig.lost = sum(1 for slot in range(plan.slots) if slot not in fired)
    fig.duplicates = sum(sum(ids.values()) - 1 for ids in fired.values())
    fig.missing_results = sum(1 for ids in fired.values() for i in ids if i not in rows)
    fig.failed_results = sum(1 for success, _ in rows.values() if not success)
    # A slot fired twice shows as two task ids. The engine gives a slot's task the same id
    # each time it could be queued, though, so a second firing may also show as a second
    # run of one id; runs beyond one per slot must then be explained by the kills: a killed
    # cluster of one worker holds one task (queue_limit = workers²), run again elsewhere.
    twice = sorted(slot for slot, ids in fired.items() if len(ids) > 1)
    if twice:
        fig.broken.append(f"slot(s) {twice[:10]} fired more than once")
    if fig.duplicates > kills:
        fig.broken.append(f"{fig.duplicates} repeated runs, more than {kills} kills explain")
    left = schedules_left()
    if left:
        fig.broken.append(f"{left} schedule(s) never ran")
    fig.notes.append(f"{plan.slots} slots, {kills} cluster kills, {len(twice)} fired twice")
    return fig


def sigterm(run: Run) -> Figures:
    cluster = run.start_cluster()
    began = time.monotonic()
    run.produce(range(run.plan.tasks))
    codes, stops = [], []
    for moment in run.fault_times(began, run.plan.stops):
        run.sleep_until(moment)
        stopping = time.monotonic()
        codes.append(cluster.stop(60))
        stops.append(time.monotonic() - stopping)
        cluster = run.start_cluster(wait=False)
        run.fault_end()
        cluster.wait_running(60)
    fig = finish(run, len(codes), f"exit codes {codes}, stops took ≤ {max(stops):.2f} s")
    if any(codes):
        fig.broken.append(f"a SIGTERM'd cluster exited with {codes}")
    return fig


RUNS: dict[str, Callable[[Run], Figures]] = {
    "baseline": baseline,
    "worker-kill": worker_kill,
    "cluster-kill": cluster_kill,
    "broker-restart": broker_restart,
    "redis-nopersist": redis_nopersist,
    "store-outage": store_outage,
    "suicide": suicide,
    "schedules": schedules,
    "sigterm": sigterm,
}


def run_scenario(scenario: str, broker: str, plan: Plan, workdir: Path) -> Figures:
    """Run one scenario on one broker and check its promise; everything it made is removed.

    On a broken promise (or an error) the tails of the cluster logs go to stderr.
    """
    proxy = scenario == "store-outage" or (scenario == "broker-restart" and broker == "postgres")
    run = Run(
        scenario, broker, plan, workdir, persistent=scenario != "redis-nopersist", proxy=proxy
    )
    with run:
        try:
            fig = RUNS[scenario](run)
        except BaseException:
            _dump_logs(run)
            raise
        fig.broken = promises(fig)
        if fig.broken:
            _dump_logs(run)
    return fig


def _dump_logs(run: Run) -> None:
    for cluster in run.clusters:
        with contextlib.suppress(OSError):
            print(f"--- {cluster.log_path} (tail)\n{cluster.log()[-3000:]}", file=sys.stderr)


# -- output ----------------------------------------------------------------------------

COLUMNS = ("scenario", "broker", "enqueued", "executions", "lost", "dupl.", "stored",
           "recover s", "drain s", "notes")  # fmt: skip


def cells(fig: Figures) -> list[str]:
    notes = list(fig.notes)
    if fig.refused:
        notes.insert(0, f"{fig.refused} refused ({', '.join(fig.refused_by)})")
    if fig.unexpected:
        notes.insert(0, f"{fig.unexpected} runs of refused enqueues")
    if fig.broken:
        notes.insert(0, "BROKEN: " + "; ".join(fig.broken))
    return [
        fig.scenario, fig.broker, str(fig.enqueued), str(fig.executions), str(fig.lost),
        str(fig.duplicates), str(fig.stored), fig.worst_recover, f"{fig.drain_s:.2f}",
        "; ".join(notes),
    ]  # fmt: skip


def text_table(figs: list[Figures], *, header: bool = True) -> str:
    rows = [list(COLUMNS), *(cells(f) for f in figs)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for r in rows if header else rows[1:]:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join([*padded, r[-1]]))
    return "\n".join(lines)


def markdown_table(figs: list[Figures]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(f)) + " |" for f in figs]
    return "\n".join(lines)


def write_notes(figs: list[Figures], plan: Plan, command: str, load: str) -> None:
    """Put the figures at the top of bench/NOTES.md's Chaos section.

    Only the section's opening (up to its first ``###`` subsection) is replaced:
    subsections written by hand below it, and every other section, stay.
    """
    intro = (
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d} ({os.cpu_count()} CPUs, load average "
        f"{load} before): {plan.tasks} tasks of {plan.task_ms:g} ms per run at up to "
        f"{plan.rate:g}/s, {plan.workers} workers, retry {plan.retry:g} s, {plan.faults} kills "
        f"or restarts per run, {plan.stops} SIGTERMs, store outage {plan.outage_s:g} s, "
        f"{plan.slots} schedule slots {plan.slot_gap_s:g} s apart. The columns are explained "
        "in `bench/chaos.py`'s docstring."
    )
    body = "\n".join(["## Chaos", "", textwrap.fill(intro, 95), "", markdown_table(figs), ""])
    text = NOTES.read_text() if NOTES.exists() else "# Benchmark notes\n"
    opening = re.compile(r"^## Chaos\n.*?(?=^##+ |\Z)", re.DOTALL | re.MULTILINE)
    if opening.search(text):
        text = opening.sub(lambda _match: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    NOTES.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="ordinary tasks per run")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, metavar="NAME",
        help=f"one of {', '.join(SCENARIOS)}; repeat for several (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--broker", action="append", choices=BROKERS,
        help="redis or postgres; repeat for both (default: both)",
    )  # fmt: skip
    parser.add_argument("--outage-s", type=float, help="store outage in seconds (default 10)")
    parser.add_argument("--task-ms", type=float, help="work per task in ms (default 5)")
    parser.add_argument("--seed", type=int, help="seed of the random faults")
    parser.add_argument(
        "--notes", action="store_true", help="write the table to bench/NOTES.md's Chaos section"
    )
    args = parser.parse_args()
    plan = Plan.long(args.tasks, outage_s=args.outage_s, task_ms=args.task_ms, seed=args.seed)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {load} on {os.cpu_count()} CPUs", flush=True)
    figs: list[Figures] = []
    print(text_table([]), flush=True)
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        for scenario in args.scenario or SCENARIOS:
            for broker in args.broker or BROKERS:
                if scenario in REDIS_ONLY and broker != "redis":
                    continue
                figs.append(run_scenario(scenario, broker, plan, Path(workdir)))
                print(text_table(figs[-1:], header=False), flush=True)
    print()
    print(text_table(figs))
    if args.notes:
        write_notes(figs, plan, "bench/chaos.py " + " ".join(sys.argv[1:]), load)
    return 1 if any(f.broken for f in figs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
