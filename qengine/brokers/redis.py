"""The Redis broker: Redis Streams with a consumer group per cluster name."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from ..config import Config, mask_url
from ..errors import BrokerError
from ..redis_conn import (
    HotLane,
    client_setting,
    client_url,
    describe_pool,
    redis_client,
    redis_errors,
    uses_provided_client,
)
from ..snapshots import RedisSnapshots, SnapshotStore
from .base import UNIQUE_TTL_S, Broker, Delivery

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

FIELD = b"p"
"""The stream entry field that holds the package."""

RECLAIM_INTERVAL_S = 1.0
"""Longest a blocking read waits before looking for expired leases again; also the default wait."""

CONSUMER_IDLE_MS = 3_600_000
"""Consumers without pending entries and silent this long are removed from the group."""

# Renew only leases this consumer still owns: a blind XCLAIM would steal a package another
# consumer reclaimed after our lease ran out, and then two clusters would run it.
_EXTEND = """
local group, consumer, renewed = ARGV[1], ARGV[2], 0
for i = 3, #ARGV do
    local entry = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
    if entry[1] and entry[1][2] == consumer then
        redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
        renewed = renewed + 1
    end
end
return renewed
"""

# Acknowledge entries ARGV[2..] of group ARGV[1] and delete them, in one atomic step: one
# call costs the monitor less than a MULTI/EXEC pipeline of the two commands. Chunked,
# because Lua's unpack() has a limit on how many values it spreads.
_ACK = """
for i = 2, #ARGV, 1000 do
    local last = math.min(i + 999, #ARGV)
    redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
    redis.call('XDEL', KEYS[1], unpack(ARGV, i, last))
end
return 0
"""

# Enqueue ARGV[1] under key KEYS[2] unless KEYS[1] marks it as enqueued already (for ARGV[2]
# seconds): the mark and the entry go in together or not at all.
_ENQUEUE_UNIQUE = """
if redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[2]) then
    return redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
end
return false
"""

# Enqueue ARGV[2..] under field ARGV[1], in order, in one atomic step. A script with every
# package as an argument costs the client a fraction of a MULTI/EXEC pipeline of XADDs
# (one command to pack, one reply to parse): async_tasks of 1,000 went from ~40k to ~90k/s.
# The shebang (Redis 7) makes a server out of memory refuse the whole script before its
# first XADD, as it refuses a whole MULTI/EXEC: all packages or none. Older servers get the
# pipeline (``RedisBroker.enqueue_many``).
_ENQUEUE_MANY = """#!lua
local ids = {}
for i = 2, #ARGV do
    ids[i - 1] = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i])
end
return ids
"""

# Remove consumers of group ARGV[1] that hold nothing and were silent for ARGV[2] ms (dead
# processes), or the consumer named ARGV[3] when it holds nothing. Checked and deleted in
# one step, so a consumer that just received packages is never dropped with its entries.
_PRUNE = """
local group, removed = ARGV[1], 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], group)) do
    local info = {}
    for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
    if info['pending'] == 0 and (info['idle'] > tonumber(ARGV[2]) or info['name'] == ARGV[3]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, info['name'])
        removed = removed + 1
    end
end
return removed
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBroker(Broker):
    """A queue as a Redis stream, consumed through one consumer group per queue name.

    Every instance is its own consumer. A received entry stays in the group's
    pending list until it is acknowledged; once it has been idle there for
    ``retry`` seconds any consumer of the group (this cluster or another) may
    claim it, which is how the work of a dead cluster is delivered again.
    Acknowledged entries are deleted, so the stream only holds live packages.
    """

    notifies_results = True
    publishes_status = True
    product = "Redis"
    default_cache = "redis"

    @classmethod
    def status_backend(cls, config: Config) -> SnapshotStore:
        return RedisSnapshots(config)

    def __init__(
        self,
        config: Config,
        list_key: str | None = None,
        *,
        connection: redis.Redis | redis.ConnectionPool | None = None,
    ) -> None:
        """Connect lazily to the configured Redis, or use ``connection``.

        Args:
            connection: an existing client or pool to share; it stays the caller's to
                close. A client that decodes responses cannot carry binary packages, so
                the broker opens its own pool with the same settings instead.
        """
        super().__init__(config, list_key)
        # A django_redis pool is shared with the project's cache: never ours to disconnect.
        own_url = connection is None and not uses_provided_client(config)
        self._owns_client = own_url
        if connection is None:
            client = redis_client(config)
        elif isinstance(connection, redis.ConnectionPool):
            client = redis.Redis(connection_pool=connection)
        else:
            client = connection
        pool = client.connection_pool
        if pool.connection_kwargs.get("decode_responses"):
            pool = type(pool)(
                connection_class=pool.connection_class,
                **{**pool.connection_kwargs, "decode_responses": False},
            )
            client = redis.Redis(connection_pool=pool)
            self._owns_client = True
        self.connection = client
        self._lane = HotLane(client)
        url = client_url(config) if own_url else None
        self.url = mask_url(url) if url else describe_pool(pool)
        self._setting = client_setting(config) if connection is None else None
        self.stream = f"qengine:{self.list_key}:stream"
        self.group = f"qengine:{self.list_key}"
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A blocking read must end before the client's own socket timeout does.
        socket_timeout = pool.connection_kwargs.get("socket_timeout")
        self._block_s = RECLAIM_INTERVAL_S
        if socket_timeout:
            self._block_s = min(self._block_s, socket_timeout / 2)
        self._retry_ms = max(1, int(config.retry * 1000))
        self._reclaim_every_s = min(RECLAIM_INTERVAL_S, config.retry / 2)
        self._last_reclaim = float("-inf")
        self._claim_cursor = "0-0"
        self._last_prune = time.monotonic()
        self._has_group = False
        self._lock = threading.Lock()
        self._extend_script = client.register_script(_EXTEND)
        self._ack_script = client.register_script(_ACK)
        self._prune_script = client.register_script(_PRUNE)
        self._unique_script = client.register_script(_ENQUEUE_UNIQUE)
        self._enqueue_many_script = client.register_script(_ENQUEUE_MANY)
        self._script_flags: bool | None = None

    # -- plumbing -------------------------------------------------------------------

    def _errors(self, action: str) -> AbstractContextManager[None]:
        """Translate redis-py errors into ours, naming the queue and the masked URL."""
        return redis_errors(self.url, f"{action} queue {self.list_key!r}", self._setting)

    def _ensure_group(self) -> None:
        if self._has_group:
            return
        try:
            self.connection.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._has_group = True

    def _with_group(self, call: Any) -> Any:
        """Run ``call()`` with the group in place, recreating it once if it vanished.

        The group goes when any instance deletes or purges the queue, so each instance
        only learns of it from a NOGROUP error.
        """
        self._ensure_group()
        try:
            return call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._has_group = False
            self._ensure_group()
            return call()

    # -- producing ------------------------------------------------------------------

    def enqueue(self, package: bytes) -> str:
        # The hot path of every async_task: errors are translated only when there is one
        # (entering a context manager per call cost ~10 µs of the producer's ~100 µs).
        try:
            return _text(self._lane("XADD", self.stream, "*", FIELD, package))
        except RedisError:
            with self._errors("enqueue to"):
                raise

    def enqueue_unique(self, package: bytes, key: str, ttl_s: int = UNIQUE_TTL_S) -> str | None:
        mark = f"{self.stream}:enqueued:{key}"
        with self._errors("enqueue to"):
            entry_id = self._unique_script(keys=[mark, self.stream], args=[package, ttl_s, FIELD])
        return None if entry_id is None else _text(entry_id)

    def enqueue_many(self, packages: Iterable[bytes]) -> list[str]:
        """Enqueue all in one script call: every package goes in, or none does."""
        packages = list(packages)
        if not packages:
            return []
        with self._errors("enqueue to"):
            if self._has_script_flags():
                ids = self._enqueue_many_script(keys=[self.stream], args=[FIELD, *packages])
            else:
                pipe = self.connection.pipeline(transaction=True)
                for package in packages:
                    pipe.xadd(self.stream, {FIELD: package})
                ids = pipe.execute()
            return [_text(entry_id) for entry_id in ids]

    def _has_script_flags(self) -> bool:
        """Whether the server reads a script's shebang (Redis 7 and later); asked once."""
        if self._script_flags is None:
            try:
                version = str(self.connection.info("server").get("redis_version", "0"))
            except ResponseError:
                # A user whose ACL denies INFO: the pipeline works on any server.
                version = "0"
            self._script_flags = int(version.split(".", maxsplit=1)[0]) >= 7
        return self._script_flags

    # -- consuming ------------------------------------------------------------------

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Lease up to ``count`` packages: expired leases first, then new entries.

        Waits in a blocking read, at most ``timeout`` seconds (default 1 s), waking
        every second at least to look for expired leases again.
        """
        count = count or self.config.receive_count
        wait_s = RECLAIM_INTERVAL_S if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + wait_s
        with self._errors("receive from"):
            while True:
                deliveries = self._reclaim(count)
                if len(deliveries) < count:
                    left_s = deadline - time.monotonic()
                    # Block only when nothing was reclaimed; BLOCK 0 would mean forever.
                    block_s = min(left_s, self._block_s) if not deliveries else 0.0
                    block_ms = int(block_s * 1000) if block_s >= 0.001 else None
                    deliveries += self._read(count - len(deliveries), block_ms)
                if deliveries or time.monotonic() >= deadline:
                    self._maybe_prune()
                    return deliveries

    def _read(self, count: int, block_ms: int | None) -> list[Delivery]:
        reply = self._with_group(
            lambda: self.connection.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        )
        deliveries = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                deliveries.append(Delivery(_text(entry_id), fields[FIELD], 1))
        return deliveries

    def _reclaim(self, count: int) -> list[Delivery]:
        """Claim entries whose lease ran out (XAUTOCLAIM), with their delivery counts.

        Runs at most every ``min(1 s, retry / 2)`` unless the last scan found a full
        batch; a cursor walks the pending list so old leases further in are reached.
        """
        now = time.monotonic()
        if now - self._last_reclaim < self._reclaim_every_s:
            return []
        with self._lock:
            start = self._claim_cursor
        reply = self._with_group(
            lambda: self.connection.xautoclaim(
                self.stream, self.group, self.consumer, self._retry_ms, start, count=count
            )
        )
        cursor, entries = _text(reply[0]), reply[1]
        # Redis 6.2 returns deleted entries as nil; 7 lists them apart and drops them.
        claimed = [(_text(entry_id), fields) for entry_id, fields in entries if fields]
        with self._lock:
            self._claim_cursor = cursor
        self._last_reclaim = float("-inf") if len(claimed) >= count else now
        if not claimed:
            return []
        pipe = self.connection.pipeline(transaction=False)
        for entry_id, _fields in claimed:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1, self.consumer)
        counts = pipe.execute()
        deliveries = []
        for (entry_id, fields), pending in zip(claimed, counts, strict=True):
            times = pending[0]["times_delivered"] if pending else 2
            deliveries.append(Delivery(entry_id, fields[FIELD], times))
        log.info("queue %r: %d expired lease(s) reclaimed", self.list_key, len(deliveries))
        return deliveries

    def _maybe_prune(self) -> None:
        """Now and then, drop consumers of dead processes that hold nothing any more."""
        now = time.monotonic()
        if now - self._last_prune < CONSUMER_IDLE_MS / 1000 / 4:
            return
        self._last_prune = now
        with suppress(ResponseError):  # the group was just deleted: nothing to prune
            self._prune_script(keys=[self.stream], args=[self.group, CONSUMER_IDLE_MS, ""])

    def acknowledge(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def acknowledge_many(self, ack_ids: Iterable[str]) -> None:
        """XACK and XDEL in one script, so no acknowledged package stays in Redis."""
        ids = list(ack_ids)
        if not ids:
            return
        with self._errors("acknowledge on"):
            self._lane.script(self._ack_script, [self.stream], [self.group, *ids])

    def extend(self, ack_ids: Iterable[str]) -> None:
        """Reset the idle time of the entries this consumer still owns (lease heartbeat)."""
        ids = list(ack_ids)
        if not ids:
            return
        with self._errors("extend leases on"):
            self._with_group(
                lambda: self._extend_script(
                    keys=[self.stream], args=[self.group, self.consumer, *ids]
                )
            )

    def fail(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def delete(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    # -- the queue as a whole -------------------------------------------------------

    def _sizes(self) -> tuple[int, int]:
        """(entries in the stream, entries leased), read in one transaction."""
        with self._errors("measure"):
            pipe = self.connection.pipeline(transaction=True)
            pipe.xlen(self.stream)
            pipe.xpending(self.stream, self.group)
            length, pending = pipe.execute(raise_on_error=False)
        if isinstance(length, Exception):
            raise BrokerError(f"Redis at {self.url} failed to measure {self.list_key!r}: {length}")
        # No group yet (nothing was ever received): nothing is leased.
        leased = 0 if isinstance(pending, Exception) else int(pending["pending"])
        return int(length), leased

    def queue_size(self) -> int:
        length, leased = self._sizes()
        return max(0, length - leased)

    def lock_size(self) -> int:
        return self._sizes()[1]

    def purge_queue(self) -> None:
        """Drop every package, leased or not, and start the group afresh in one step."""
        with self._errors("purge"):
            pipe = self.connection.pipeline(transaction=True)
            pipe.delete(self.stream)
            pipe.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            pipe.execute()
        self._has_group = True

    def delete_queue(self) -> None:
        """Delete the stream and its group; the next receive creates them again."""
        with self._errors("delete"):
            self.connection.delete(self.stream)
        self._has_group = False

    def ping(self) -> bool:
        try:
            return bool(self.connection.ping())
        except Exception:  # ping promises a bool whatever went wrong
            return False

    def info(self) -> str:
        with self._errors("describe"):
            version = self.connection.info("server").get("redis_version", "unknown")
        return f"Redis {version}"

    def close(self) -> None:
        """Leave the group if this consumer holds nothing, then release our own connections."""
        with suppress(RedisError):  # unreachable or no group: nothing to leave
            self._prune_script(
                keys=[self.stream], args=[self.group, CONSUMER_IDLE_MS, self.consumer]
            )
        self._lane.close()
        if self._owns_client:
            self.connection.close()
            self.connection.connection_pool.disconnect()

    def __repr__(self) -> str:
        return f"<RedisBroker queue={self.list_key!r} url={self.url!r}>"
