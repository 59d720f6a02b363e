"""The floor under (c) of throughput.py: the least a Redis + process-pool round trip costs here.

No qengine code runs: a producer XADDs a package, marks its interest and
blocks on a list; a "cluster" thread reads the stream with XREADGROUP,
hands the package to a ``ProcessPoolExecutor`` (2 workers, forkserver),
and a second thread pushes the result to the producer's list with one
script call and acknowledges. That is every hop the design keeps, with no
signing, no store and no bookkeeping, so qengine's round trip can only be
slower; how much slower is what our own code costs.

Usage: ``.venv/bin/python bench/floor.py [-n 500]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
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
    print(f"floor round trip: p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms")


def serve(stop: threading.Event, pool: ProcessPoolExecutor) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    finished: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()

    def push() -> None:
        notifier = redis.Redis.from_url(REDIS_URL)
        script = notifier.register_script(PUSH)
        while not stop.is_set():
            try:
                number, entry = finished.get(timeout=0.2)
            except queue.Empty:
                continue
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


def _finished(
    finished: queue.SimpleQueue[tuple[int, bytes]], number: int, entry: bytes, _f: Future[bytes]
) -> None:
    finished.put((number, entry))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="round trips")
    args = parser.parse_args()
    if os.environ.get("QENGINE_FLOOR_PRODUCER"):
        producer(os.environ["QENGINE_FLOOR_PRODUCER"], args.n)
        return 0
    client = redis.Redis.from_url(REDIS_URL)
    client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    context = multiprocessing.get_context("forkserver")
    stop = threading.Event()
    try:
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            for _ in range(4):
                pool.submit(echo, b"").result()
            server = threading.Thread(target=serve, args=(stop, pool), daemon=True)
            server.start()
            env = {**os.environ, "QENGINE_FLOOR_PRODUCER": PREFIX}
            subprocess.run([sys.executable, __file__, "-n", str(args.n)], env=env, check=True)
            stop.set()
            server.join()
    finally:
        keys = list(client.scan_iter(f"{PREFIX}:*"))
        if keys:
            client.delete(*keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
