"""qengine beside its peers: one workload on each system, same Redis, same 2 workers, same machine.

    .venv/bin/python bench/peers/run.py                       # noop, N=10000, 3 rounds
    .venv/bin/python bench/peers/run.py --quick               # smoke run: N=300, 1 round, rt 50
    .venv/bin/python bench/peers/run.py --workload realistic -n 2000 -r 1
    .venv/bin/python bench/peers/run.py --systems qengine,celery -n 5000
    .venv/bin/python bench/peers/run.py --systems qengine,qengine-keep250          # save_limit 250
    .venv/bin/python bench/peers/run.py --systems qengine-embedded,django-q2-orm   # SQLite only

Why: a figure of qengine alone says little; beside Huey, Dramatiq, Celery, RQ
and django-q2, run the same way on the same machine in the same minutes, it
says where qengine stands and where it loses.

What runs. The systems: qengine with its shipped defaults (the real cluster,
``python -m qengine.cli``, configured by QENGINE_* variables only: broker,
SQLite store, secret key, 2 workers, save_limit 0, a unique name), qengine-tuned
(the same plus bulk 100, queue_limit 1000, poll 0.01), qengine-embedded (no
broker: queue and results in the one SQLite file), qengine-keep250 (save_limit
at its default, 250), Huey (RedisHuey, ``huey_consumer -k process -w 2``),
huey-notify (the same with ``notify_result=True``; round trips only), Dramatiq
(``--processes 2 --threads 1``, Results middleware, Redis backend), Celery
(prefork ``-c 2``, Redis broker and backend), RQ (two ``rq worker`` processes),
django-q2 (2 workers, Redis broker, SQLite, save_limit 0) and django-q2-orm (the
same with its ORM broker on that SQLite file). Every system logs at WARNING, so
none pays for a line per task. The peers are pip-installed from
bench/peers/requirements.txt into bench/peers/.venv, made here when missing; the
project's .venv is never touched.

The phases, per system and round (driver.py runs them, in the system's venv):

  enqueue   N tasks from one process, one call each, no workers running;
            the batch API as its own figure where the system has one
  drain     the workers start on that backlog: from the first result seen to
            the last, rating only what was left at the first look
  memory    PSS of the workers' process tree right after the drain
  e2e       warm workers, one producer enqueues N fresh tasks: from the first
            enqueue to the last result stored
  rt        one task at a time, enqueue then the system's own blocking result
            call: p50 and p99 over --rt tasks (after 10 unmeasured)

Results are counted where each system stores them (qengine: rows in its SQLite
store, or for qengine-keep250, which keeps only 250, the tasks its Redis consumer
group has acknowledged, each only once its result is saved; django-q2: Success
rows; Huey: its result hash; Dramatiq and Celery: DBSIZE of a Redis database
holding only their results; RQ: its finished-job registry). Rounds go
round-robin over the systems, so a drift of the machine's load touches all of
them. bench/floor.py runs once per round too: the least a Redis + process-pool
round trip costs here, with no queue library at all.

Redis: two databases of 127.0.0.1:6379 (14 for brokers, 15 for result
backends, ``--redis-db``), which must be empty at the start (``--flush`` clears
them) and are flushed after every system's round. Every process started here is
a process group of its own, bounded by a timeout and killed at exit.

Output: a table on stdout, and Markdown and JSON in ``--out`` (default
bench/peers/results/): for each figure the median over the rounds and the
min-max, and each peer's ratio to qengine (defaults), peer / qengine, of the
medians: above 1 a peer is faster on a rate (/s) and costlier on a cost (ms,
MB, µs of CPU per task). Then, for the pairs of PAIRS present in the run, their
drain and e2e ratios against a target: qengine-keep250 / qengine (the default
save_limit within 10% of save_limit 0) and qengine-embedded / django-q2-orm.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import procs  # noqa: E402
from systems import PROJECT_SYSTEMS, SYSTEMS  # noqa: E402

VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
REDIS = "redis://127.0.0.1:6379"
DEFAULT_SYSTEMS = tuple(SYSTEMS)
BASELINE = "qengine"
WORKLOADS = {"noop": 10_000, "realistic": 10_000, "big": 100_000}
PHASES = {
    "noop": ("enqueue", "batch", "drain", "e2e", "rt"),
    "realistic": ("enqueue", "batch", "drain", "e2e", "rt"),
    "big": ("drain", "e2e"),  # the backlog is still enqueued one by one, but not reported
}
ONLY = {"huey-notify": ("rt",)}
"""Variants that exist for one phase: huey-notify differs from huey only in how a get waits."""
PAIRS: tuple[tuple[str, str, float, str], ...] = (
    ("qengine-keep250", "qengine", 0.9, "the default save_limit (250) within 10% of save_limit 0"),
    ("qengine-embedded", "django-q2-orm", 3.0, "embedded default at 3x django-q2's ORM broker"),
)
"""(system, against, target, why): comparisons with a goal, beside the peer / qengine table."""
PAIR_FIGURES = ("drain_per_s", "e2e_per_s")
"""The rates a pair is judged on: a backlog drained, and warm workers fed by one producer."""

# (key, column, format, higher is better)
FIGURES: tuple[tuple[str, str, str, bool], ...] = (
    ("enqueue_per_s", "enqueue/s", "{:.0f}", True),
    ("batch_enqueue_per_s", "batch enq/s", "{:.0f}", True),
    ("drain_per_s", "drain/s", "{:.0f}", True),
    ("e2e_per_s", "e2e/s", "{:.0f}", True),
    ("rt_p50_ms", "rt p50 ms", "{:.2f}", False),
    ("rt_p99_ms", "rt p99 ms", "{:.2f}", False),
    ("pss_mb", "PSS MB", "{:.0f}", False),
    ("producer_cpu_us", "prod CPU µs/task", "{:.0f}", False),
    ("worker_cpu_us", "worker CPU µs/task", "{:.0f}", False),
)


def note(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


# -- the peers' virtual environment -----------------------------------------------------


def peers_python() -> Path:
    """bench/peers/.venv's interpreter, made (or brought up to requirements.txt) when needed.

    A stamp of requirements.txt's hash in the venv tells whether the installed
    pins are the current ones, so an edit of the file reinstalls on the next run.
    """
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements.sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)  # the venv's own interpreter
        note(f"making {VENV} with {base}")
        code, out = procs.run_bounded([base, "-m", "venv", str(VENV)], timeout=300)
        if code:
            raise SystemExit(f"python -m venv failed:\n{out}")
    note(f"pip install -r {REQUIREMENTS.name} into {VENV}")
    code, out = procs.run_bounded(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-r", str(REQUIREMENTS)], timeout=900,
    )  # fmt: skip
    if code:
        raise SystemExit(f"pip install failed:\n{out[-4000:]}")
    stamp.write_text(want)
    return python


# -- Redis ------------------------------------------------------------------------------


def redis_dbs(first: int) -> tuple[Any, Any]:
    import redis

    return (redis.Redis.from_url(f"{REDIS}/{first}"), redis.Redis.from_url(f"{REDIS}/{first + 1}"))


def check_dbs(first: int, flush: bool) -> None:
    """Refuse to start on databases holding someone's keys (unless ``--flush``)."""
    for db in redis_dbs(first):
        size = db.dbsize()
        if size and not flush:
            number = db.connection_pool.connection_kwargs["db"]
            raise SystemExit(f"Redis database {number} holds {size} keys: this benchmark flushes "
                             "its databases, so it needs empty ones (--redis-db N for others, or "
                             "--flush if they are a killed run's leftovers)")  # fmt: skip
        db.flushdb()


def flush_dbs(first: int) -> None:
    for db in redis_dbs(first):
        db.flushdb()
        db.close()


# -- one round of one system ------------------------------------------------------------


def run_driver(system: str, args: argparse.Namespace, phases: Sequence[str]) -> dict[str, Any]:
    """driver.py for one system in its venv, bounded in time; its JSON outcome.

    The driver's workers are groups of their own, noted in a file: they are
    stopped here too, should the driver be killed before it could stop them.
    """
    python = sys.executable if system in PROJECT_SYSTEMS else str(args.peers_python)
    with tempfile.TemporaryDirectory(prefix="peers-run-") as tmp:
        out, record = Path(tmp) / "outcome.json", Path(tmp) / "groups"
        argv = [python, str(HERE / "driver.py"), system, "--workload", args.workload,
                "-n", str(args.n), "--rt", str(args.rt), "--phases", ",".join(phases),
                "--broker-db", str(args.redis_db), "--result-db", str(args.redis_db + 1),
                "--redis", REDIS, "--phase-timeout", str(args.phase_timeout),
                "--out", str(out), "--record", str(record)]  # fmt: skip
        if args.keep:
            argv.append("--keep")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QENGINE_", "DJANGO_"))}
        env.pop("PYTHONPATH", None)
        limit = 4 * args.phase_timeout + 120
        process = procs.spawn_group(argv, env=env, cwd=HERE, log=None)
        try:
            process.wait(limit)
        except subprocess.TimeoutExpired:
            note(f"{system}: over {limit:.0f} s, stopping it")
            procs.kill_group(process.pid, grace=30)  # SIGTERM first: the driver stops its workers
        finally:
            procs.kill_group(process.pid, grace=5)
            if procs.kill_recorded(record):
                note(f"{system}: stopped workers its driver had left")
            flush_dbs(args.redis_db)
        if not out.exists():
            return {"system": system, "error": f"driver gave no outcome (exit {process.poll()})"}
        outcome: dict[str, Any] = json.loads(out.read_text())
        return outcome


def run_floor(args: argparse.Namespace) -> dict[str, float] | None:
    """bench/floor.py's round trip (no queue library: Redis, a process pool, a SQLite commit)."""
    env = {**os.environ, "QENGINE_TEST_REDIS_URL": f"{REDIS}/{args.redis_db}"}
    code, out = procs.run_bounded(
        [sys.executable, str(ROOT / "bench" / "floor.py"), "-n", str(max(args.rt, 50))],
        timeout=120 + args.rt * 0.2, env=env, cwd=ROOT,
    )  # fmt: skip
    flush_dbs(args.redis_db)
    match = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    if code or not match:
        note(f"floor.py failed ({code}): {out[-500:]}")
        return None
    return {"p50_ms": float(match[1]), "p99_ms": float(match[2])}


# -- the report -------------------------------------------------------------------------


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per system and figure: median, min, max and the values of the rounds that gave it."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for system, outcomes in rounds.items():
        figures: dict[str, list[float]] = {}
        for outcome in outcomes:
            for key, value in outcome.get("figures", {}).items():
                figures.setdefault(key, []).append(value)
        out[system] = {
            key: {"median": statistics.median(v), "min": min(v), "max": max(v), "values": v}
            for key, v in figures.items()
        }
    return out


def cell(stats: dict[str, Any] | None, fmt: str) -> str:
    if stats is None:
        return "—"
    text = fmt.format(stats["median"])
    if len(stats["values"]) > 1:
        text += f" ({fmt.format(stats['min'])}-{fmt.format(stats['max'])})"
    return text


def tables(
    summary: dict[str, dict[str, dict[str, Any]]],
    batch: dict[str, str | None],
    failed: dict[str, str],
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Header, the figures' rows and the ratios' rows (peer / qengine of the medians)."""
    header = ["system"] + [f"{col} {'↑' if up else '↓'}" for _, col, _, up in FIGURES]
    rows, ratios = [], []
    base = summary.get(BASELINE, {})
    for system, figures in summary.items():
        row = [system + (" (failed)" if system in failed and not figures else "")]
        ratio = [system]
        for key, _, fmt, _ in FIGURES:
            stats = figures.get(key)
            if key.startswith("batch") and stats is None and system in batch:
                row.append("n/a" if batch[system] is None else "—")
            else:
                row.append(cell(stats, fmt))
            if stats and base.get(key) and base[key]["median"]:
                ratio.append(f"{stats['median'] / base[key]['median']:.2f}")
            else:
                ratio.append("—")
        rows.append(row)
        if system != BASELINE:
            ratios.append(ratio)
    return header, rows, ratios


def pair_table(
    rounds: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, dict[str, Any]]]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of PAIRS' ratios (system / against) on PAIR_FIGURES, for pairs in the run.

    Each cell is the ratio of the medians; with several rounds, the (min-max) of the
    ratios round by round follows it, since the two systems of a round ran minutes
    apart on the same machine: a spread of those says how far the medians can be trusted.
    """
    header = ["ratio"] + [f"{col} ↑" for key, col, _, _ in FIGURES if key in PAIR_FIGURES]
    header += ["target", "met"]
    rows = []
    for system, against, target, _why in PAIRS:
        if system not in summary or against not in summary:
            continue
        row, met = [f"{system} / {against}"], []
        for key in PAIR_FIGURES:
            top, bottom = summary[system].get(key), summary[against].get(key)
            if not top or not bottom or not bottom["median"]:
                row.append("—")
                continue
            ratio = top["median"] / bottom["median"]
            met.append(ratio >= target)
            text = f"{ratio:.2f}"
            per_round = [
                a["figures"][key] / b["figures"][key]
                for a in rounds[system]
                for b in rounds[against]
                if a.get("round") == b.get("round")
                and a["figures"].get(key) and b["figures"].get(key)
            ]  # fmt: skip
            if len(per_round) > 1:
                text += f" ({min(per_round):.2f}-{max(per_round):.2f})"
            row.append(text)
        verdict = "—" if not met else "yes" if all(met) else "no"
        rows.append([*row, f"≥ {target:.2f}", verdict])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in [header, *rows])  # fmt: skip


def git_revision() -> str:
    """The commit of the working tree, and a hash of its uncommitted diff in qengine/ if any.

    Other work may change qengine/ while a run goes on: the revision is taken at each
    round's start, and the report says when the rounds did not all measure the same code.
    """
    code, out = procs.run_bounded(["git", "rev-parse", "--short", "HEAD"], timeout=30, cwd=ROOT)
    if code:
        return "unknown"
    _, diff = procs.run_bounded(["git", "diff", "HEAD", "--", "qengine"], timeout=30, cwd=ROOT)
    dirty = f"+{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff.strip() else ""
    return out.strip() + dirty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="noop", choices=tuple(WORKLOADS))
    parser.add_argument("-n", type=int, help="tasks per phase (default: 10000; big: 100000)")
    parser.add_argument("-r", "--rounds", type=int, help="rounds over all systems (default 3)")
    parser.add_argument("--rt", type=int, help="measured round trips (default 300)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, from: {', '.join(SYSTEMS)}")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: N 300, 1 round, rt 50")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=14,
        help="this and the next database are the benchmark's (default 14, 15)",
    )
    parser.add_argument("--flush", action="store_true", help="clear those databases first")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip bench/floor.py")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep each run's temporary folder")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system {', '.join(unknown)}: choose from {', '.join(SYSTEMS)}")
    args.n = args.n or (300 if args.quick else WORKLOADS[args.workload])
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.rt = args.rt or (50 if args.quick else 300)
    # Each wait for results is bounded: at least 25 tasks a second, or the round fails.
    args.phase_timeout = 60 + args.n / 25 + args.rt * 0.5

    from bench.throughput import machine_reference

    if any(s not in PROJECT_SYSTEMS for s in systems):
        args.peers_python = peers_python()
    check_dbs(args.redis_db, args.flush)
    machine = machine_reference()
    load_before = os.getloadavg()
    print(machine, flush=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} "
          f"on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    began = time.monotonic()
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    floors: list[dict[str, float]] = []
    failed: dict[str, str] = {}
    versions: dict[str, str] = {}
    batch: dict[str, str | None] = {}
    revisions: list[str] = []
    try:
        for number in range(1, args.rounds + 1):
            revisions.append(git_revision())
            if args.floor:
                note(f"round {number}/{args.rounds}: floor.py")
                floor = run_floor(args)
                if floor:
                    floors.append(floor)
                    print(f"round {number} floor: p50 {floor['p50_ms']:.2f} ms, "
                          f"p99 {floor['p99_ms']:.2f} ms", flush=True)  # fmt: skip
            for system in systems:
                only = ONLY.get(system, PHASES[args.workload])
                phases = [p for p in PHASES[args.workload] if p in only]
                if not phases:
                    continue
                note(f"round {number}/{args.rounds}: {system}")
                outcome = run_driver(system, args, phases)
                versions[system] = outcome.get("version", "?")
                if "batch" in phases:  # n/a in the table only where the phase ran
                    batch[system] = outcome.get("batch_api")
                if "error" in outcome:
                    failed[system] = outcome["error"]
                    print(f"round {number} {system}: FAILED {outcome['error']}\n"
                          f"{outcome.get('traceback', '')}{outcome.get('worker_log', '')}",
                          flush=True)  # fmt: skip
                    continue
                outcome["round"] = number  # PAIRS' ratios match the rounds of two systems
                rounds[system].append(outcome)
                shown = ", ".join(f"{k} {v:.4g}" for k, v in outcome["figures"].items())
                print(f"round {number} {system}: {shown}", flush=True)
    finally:
        procs.kill_all_groups()
        flush_dbs(args.redis_db)

    summary = summarize(rounds)
    header, rows, ratios = tables(summary, batch, failed)
    pair_header, pairs = pair_table(rounds, summary)
    floor_line = "floor.py: not run"
    if floors:
        p50 = statistics.median(f["p50_ms"] for f in floors)
        p99 = statistics.median(f["p99_ms"] for f in floors)
        floor_line = (f"floor.py (no queue library: Redis + process pool + SQLite commit), "
                      f"median of {len(floors)}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")  # fmt: skip
    load_after = os.getloadavg()
    minutes = (time.monotonic() - began) / 60
    command = " ".join(
        [".venv/bin/python bench/peers/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    code_line = f"qengine {revisions[0]}" if revisions else "qengine ?"
    if len(set(revisions)) > 1:
        code_line = (f"qengine CHANGED during the run (working tree per round: "
                     f"{', '.join(revisions)}): rounds measured different code")  # fmt: skip
    print()
    print(text_table(header, rows))
    print()
    print(f"peer / {BASELINE} (medians; rates ↑: above 1 the peer is faster; costs ↓: above 1 "
          "the peer costs more)")  # fmt: skip
    print(text_table(header, ratios))
    if pairs:
        print()
        print("pairs with a target (ratio of the medians; (min-max) of the ratios per round)")
        print(text_table(pair_header, pairs))
    print()
    print(floor_line)
    print(code_line)
    for system, error in failed.items():
        print(f"failed: {system}: {error}")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"peers-{args.workload}-{stamp}"
    meta = {
        "command": command, "workload": args.workload, "n": args.n, "rounds": args.rounds,
        "rt": args.rt, "systems": systems, "machine": machine, "qengine": revisions,
        "load_before": load_before, "load_after": load_after, "minutes": round(minutes, 1),
        "versions": versions, "batch_api": batch,
    }  # fmt: skip
    report = {"meta": meta, "summary": summary, "floor": floors, "failed": failed,
              "rounds": rounds}  # fmt: skip
    base.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    md = [
        f"# qengine and its peers: {args.workload}, N={args.n}, {args.rounds} round(s), "
        f"rt {args.rt}",
        "",
        f"`{command}` — {code_line}; "
        + ", ".join(f"{s} {v}" for s, v in versions.items() if s not in PROJECT_SYSTEMS),
        "",
        f"{machine}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"on {os.cpu_count()} CPUs; {minutes:.1f} min.",
        "",
        "Median over the rounds, (min-max) when more than one; ↑ higher is better, "
        "↓ lower is better. n/a: the system has no batch enqueue call.",
        "",
        markdown_table(header, rows),
        "",
        f"Ratio peer / {BASELINE} (shipped defaults), of the medians: on a ↑ rate above 1 the "
        "peer is faster; on a ↓ cost above 1 the peer costs more than qengine.",
        "",
        markdown_table(header, ratios),
        "",
    ]
    if pairs:
        md += [
            "Pairs with a target: the ratio of the medians, with the (min-max) of the ratios "
            "round by round when more than one; met: every figure at or above the target. "
            + "; ".join(f"{s} / {a}: {why}" for s, a, _, why in PAIRS if {s, a} <= set(summary))
            + ".",
            "",
            markdown_table(pair_header, pairs),
            "",
        ]
    md += [floor_line + "."]
    if failed:
        md += ["", "Failed: " + "; ".join(f"{s}: {e}" for s, e in failed.items())]
    base.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {base}.md and .json")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
