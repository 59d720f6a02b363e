"""The floor under (c) of throughput.py: the least a Redis + process-pool round trip costs here.

No qengine code runs: a producer XADDs a package, marks its interest and
blocks on a list; a "cluster" thread reads the stream with XREADGROUP,
hands the package to a ``ProcessPoolExecutor`` (2 workers, forkserver),
and a second thread commits the result to a SQLite file (WAL,
``synchronous=NORMAL``, as the engine's store) and only then pushes it to
the producer's list with one script call and acknowledges. That is every
hop the design keeps, including the one store commit read-your-writes
needs (a caller is told only of a stored result), with no signing and no
bookkeeping, so qengine's round trip can only be slower; how much slower
is what our own code costs. ``--no-store`` leaves the commit out, to show
what the promise costs.

Usage: ``.venv/bin/python bench/floor.py [-n 500] [--no-store]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial

import redis

REDIS_URL = os.environ.get("QENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"qengine-floor-{os.getpid()}"
STREAM = f"{PREFIX}:stream"
PUSH = "if redis.call('DEL', KEYS[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) end"


def echo(package: bytes) -> bytes:
    return package


def producer(prefix: str, n: int) -> None:
    """The caller, in its own process as in throughput.py: prints p50 and p99."""
    client = redis.Redis.from_url(REDIS_URL)
    times = []
    for i in range(n):
        began = time.perf_counter()
        # Interest first: this floor has no store to look in for a result that beat it.
        client.set(f"{prefix}:waiting:{i}", 1, ex=60)
        client.xadd(f"{prefix}:stream", {"p": b"x" * 400})
        client.blpop([f"{prefix}:done:{i}"], timeout=10)
        times.append((time.perf_counter() - began) * 1000)
    times = sorted(times[20:])  # the first ones warm the pool and the connections
    p99 = times[int(len(times) * 0.99) - 1]
    kind = "without" if os.environ.get("QENGINE_FLOOR_BARE") else "with"
    p50 = statistics.median(times)
    print(f"floor round trip ({kind} the store commit): p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def serve(stop: threading.Event, pool: ProcessPoolExecutor, store_path: str | None) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    finished: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()

    def push() -> None:
        notifier = redis.Redis.from_url(REDIS_URL)
        script = notifier.register_script(PUSH)
        db = _store_at(store_path) if store_path else None
        while not stop.is_set():
            try:
                number, entry = finished.get(timeout=0.2)
            except queue.Empty:
                continue
            if db is not None:
                with db:  # one transaction, committed before anyone is told
                    db.execute("INSERT INTO result VALUES (?, ?)", (number, b"r" * 64))
            script(keys=[f"{PREFIX}:waiting:{number}", f"{PREFIX}:done:{number}"], args=[b"r"])
            notifier.xack(STREAM, "g", entry)

    threading.Thread(target=push, daemon=True).start()
    number = 0
    while not stop.is_set():
        reply = client.xreadgroup("g", "c", {STREAM: ">"}, count=10, block=200)
        for _stream, entries in reply or ():
            for entry, fields in entries:
                done = partial(_finished, finished, number, entry)
                pool.submit(echo, fields[b"p"]).add_done_callback(done)
                number += 1


def _store_at(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS result (id INTEGER PRIMARY KEY, value BLOB)")
    return db


def _finished(
    finished: queue.SimpleQueue[tuple[int, bytes]], number: int, entry: bytes, _f: Future[bytes]
) -> None:
    finished.put((number, entry))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="round trips")
    parser.add_argument("--no-store", action="store_true", help="leave out the store commit")
    args = parser.parse_args()
    if os.environ.get("QENGINE_FLOOR_PRODUCER"):
        producer(os.environ["QENGINE_FLOOR_PRODUCER"], args.n)
        return 0
    client = redis.Redis.from_url(REDIS_URL)
    client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    context = multiprocessing.get_context("forkserver")
    stop = threading.Event()
    workdir = tempfile.mkdtemp(prefix="qengine-floor-")
    store_path = None if args.no_store else os.path.join(workdir, "floor.sqlite3")
    try:
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            for _ in range(4):
                pool.submit(echo, b"").result()
            server = threading.Thread(target=serve, args=(stop, pool, store_path), daemon=True)
            server.start()
            env = {**os.environ, "QENGINE_FLOOR_PRODUCER": PREFIX}
            if args.no_store:
                env["QENGINE_FLOOR_BARE"] = "1"
            subprocess.run([sys.executable, __file__, "-n", str(args.n)], env=env, check=True)
            stop.set()
            server.join()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        keys = list(client.scan_iter(f"{PREFIX}:*"))
        if keys:
            client.delete(*keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
