"""Result notifications over Redis, so a caller waiting for a result wakes as soon as it exists.

The waiter marks its interest (a short-lived key), looks in the store, and
blocks on a list. The monitor runs one script that, for each task someone
waits for, clears the interest and pushes the finished row to that list,
signed; the waiter checks the signature and has its ``Task`` without
reading the store. Nobody waiting costs one script call for a single task,
one MGET for a batch. Without Redis, waiting falls back to polling the store.

The monitor notifies once the store's write is committed (or the result is
in the cache), never before: a caller that was told a result can read it
back with ``fetch`` in any process at once, and a cluster that dies before
its commit has told nobody anything. The row still travels with the
notification, so the woken caller reads nothing more.

Group waits (a count, or the first result of a group) work the same way
with a set of waiters per group: after each stored or cached batch, every
waiter of its groups gets a token on its own list and looks again.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import redis

from .config import Config
from .errors import BrokerError, PackageTooLarge, SignatureError
from .redis_conn import (
    HotLane,
    client_setting,
    close_client,
    describe_client,
    redis_client,
    redis_errors,
    uses_provided_client,
)
from .signing import Signer

__all__ = ["Notifier", "notify_groups_safely", "notify_safely"]

log = logging.getLogger(__name__)

LINGER_S = 30
"""How long a notification waits for its reader before Redis drops it."""

PAYLOAD_LIMIT = 64 * 1024
"""Largest pushed row (bytes); a larger result is read from the store."""

# KEYS: interest and list, pair by pair; ARGV: linger seconds, then one row per pair.
# Returns the (1-based) pairs it woke. Clearing the interest here spares the waiter
# a round trip after it wakes, and keeps a second notification from pushing twice.
_NOTIFY = """
local woken = {}
for i = 1, #KEYS, 2 do
  if redis.call('DEL', KEYS[i]) == 1 then
    local list = KEYS[i + 1]
    redis.call('RPUSH', list, ARGV[(i + 1) / 2 + 1])
    redis.call('EXPIRE', list, ARGV[1])
    woken[#woken + 1] = (i + 1) / 2
  end
end
return woken
"""


# KEYS: the waiter sets of groups that got results; ARGV: linger seconds. Each member
# names the wake-up list of one waiter (a group can have several): each gets a token.
# The lists are named by the members, so this script suits a single Redis server
# (as the broker does), not Redis Cluster.
_NOTIFY_GROUPS = """
for i = 1, #KEYS do
  local waiters = redis.call('SMEMBERS', KEYS[i])
  if #waiters > 0 then
    redis.call('DEL', KEYS[i])
    for _, list in ipairs(waiters) do
      redis.call('RPUSH', list, 1)
      redis.call('EXPIRE', list, ARGV[1])
    end
  end
end
return 0
"""


class _Deadline:
    """A waiter's ``wait`` (ms, -1: none) as the times its Redis calls need."""

    def __init__(self, wait: int) -> None:
        self.at = None if wait < 0 else time.monotonic() + wait / 1000
        self.interest_s = math.ceil(wait / 1000) + 1 if wait >= 0 else 3600
        """How long the waiter's interest key lives: past the wait, or an hour."""

    def block_s(self) -> float | None:
        """How long to block before the next look, or None once the wait is over.

        A second at most: a result saved just before the interest was visible
        wakes nobody, and only the next look finds it.
        """
        if self.at is None:
            return 1.0
        left = self.at - time.monotonic()
        return None if left <= 0 else max(min(left, 1.0), 0.01)


class Notifier:
    """Wakes callers waiting on task and group ids, through the broker's Redis.

    ``signer`` is the configuration's signer salted for results
    (``Signer.for_config(config, secret, purpose="result")``): a signed row can
    never pass for a task package, nor the reverse. Old keys verify too: during
    a key rotation a waiter on the other key still wakes.
    """

    def __init__(self, config: Config, signer: Signer) -> None:
        self.client = redis_client(config)
        self._owns_client = not uses_provided_client(config)  # django_redis lends its own
        self.lane = HotLane(self.client)
        self.where = describe_client(self.client)
        self.setting = client_setting(config)
        self.prefix = f"qengine:{config.name}"
        self.signer = signer
        self.script = self.client.register_script(_NOTIFY)
        self.group_script = self.client.register_script(_NOTIFY_GROUPS)

    def close(self) -> None:
        """Disconnect now, not when collected: ``configure()`` replaces the notifier, and
        a process that reconfigures often would otherwise hold a pool per configuration.
        A client lent by ``django_redis`` stays open: its pool is the project's cache's."""
        self.lane.close()
        close_client(self.client, owned=self._owns_client)

    def _errors(self, action: str) -> AbstractContextManager[None]:
        """Redis errors as ``BrokerUnavailable``/``BrokerError``: this is the broker's Redis."""
        return redis_errors(self.where, action, self.setting)

    def _waiting(self, task_id: str) -> str:
        return f"{self.prefix}:waiting:{task_id}"

    def _done(self, task_id: str) -> str:
        return f"{self.prefix}:done:{task_id}"

    def payload(self, row: Mapping[str, Any] | None) -> bytes:
        """The signed row to push, or ``b""`` (read it from the store) when too large.

        Too large is over ``PAYLOAD_LIMIT``, or signed over ``max_package_size``:
        the waiter's signer would refuse such a package, and one that failed to
        sign here would keep every waiter of the batch from being woken.
        """
        if row is None or not _fits(row):
            return b""
        try:
            return self.signer.dumps(dict(row))
        except PackageTooLarge:
            return b""

    def notify(
        self,
        task_ids: Sequence[str],
        rows: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> set[str]:
        """Wake whoever waits for these tasks, handing over ``rows`` where given; return who woke.

        Called only once the rows are committed (or cached): what a waiter is
        told must be what any reader then finds.
        """
        rows = rows or {}
        with self._errors(f"wake the waiters of {len(task_ids)} task(s)"):
            if len(task_ids) > 1:
                # Under load most finished tasks have nobody waiting: ask first, and sign and
                # send rows only for those who wait. A single task (the latency case) goes
                # straight to the script, which checks for a waiter itself.
                flags = self.lane("MGET", *[self._waiting(i) for i in task_ids])
                task_ids = [i for i, flag in zip(task_ids, flags, strict=True) if flag]
            if not task_ids:
                return set()
            keys: list[str] = []
            args: list[Any] = [LINGER_S]
            for task_id in task_ids:
                keys += (self._waiting(task_id), self._done(task_id))
                args.append(self.payload(rows.get(task_id)))
            woken = self.lane.script(self.script, keys, args)
        return {task_ids[int(n) - 1] for n in woken}

    def wait(
        self,
        task_id: str,
        probe: Callable[[], Any],
        wait: int,
        decode: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Any:
        """``probe()`` until truthy, blocking on the task's notification between tries.

        With ``decode``, a pushed row that verifies is turned into the answer
        directly instead of probing again.

        Raises:
            BrokerUnavailable: the broker's Redis cannot be reached.
            BrokerError: it refused a command.
        """
        deadline = _Deadline(wait)
        action = f"wait for task {task_id!r}"
        with self._errors(action):
            self.lane("SET", self._waiting(task_id), 1, "EX", deadline.interest_s)
        handed_over = False
        try:
            while True:
                value = probe()
                if value:
                    return value
                block_s = deadline.block_s()
                if block_s is None:
                    return value
                with self._errors(action):
                    popped = self.client.blpop([self._done(task_id)], timeout=block_s)
                if popped is None:
                    continue
                row = self._verified(popped[1])
                if row is not None and decode is not None:
                    handed_over = True
                    return decode(row)
        finally:
            if not handed_over:  # the monitor cleared what it handed over; the rest is ours
                self._forget(self._waiting(task_id), self._done(task_id))

    def _forget(self, *keys: str) -> None:
        """Delete a waiter's keys, if Redis lets us: they expire on their own anyway.

        A failure here must not hide the waiter's answer, nor the error that
        ended the wait (Redis went down mid-wait and the cleanup fails too).
        """
        try:
            self.client.delete(*keys)
        except redis.RedisError as exc:
            log.debug("could not delete waiter keys %s: %s", keys, exc)

    def _group_waiters(self, group_id: str) -> str:
        return f"{self.prefix}:group-waiters:{group_id}"

    def notify_groups(self, group_ids: Iterable[str]) -> None:
        """Wake whoever waits on these groups: they count or read the group again."""
        keys = [self._group_waiters(g) for g in group_ids]
        if keys:
            with self._errors(f"wake the waiters of {len(keys)} group(s)"):
                self.group_script(keys=keys, args=[LINGER_S])

    def wait_group(self, group_id: str, probe: Callable[[], Any], wait: int) -> Any:
        """``probe()`` until truthy, blocking between tries until a result of the group is saved.

        A group fills one result at a time, so the waiter enrols again before
        each look: a result saved after the look wakes it, one saved before
        is what the look sees.

        Raises:
            BrokerUnavailable: the broker's Redis cannot be reached.
            BrokerError: it refused a command.
        """
        deadline = _Deadline(wait)
        waiters = self._group_waiters(group_id)
        wake = f"{waiters}:{uuid.uuid4().hex}"
        action = f"wait for group {group_id!r}"
        try:
            while True:
                with self._errors(action), self.client.pipeline(transaction=False) as pipe:
                    pipe.sadd(waiters, wake).expire(waiters, deadline.interest_s).execute()
                value = probe()
                if value:
                    return value
                block_s = deadline.block_s()
                if block_s is None:
                    return value
                with self._errors(action):
                    self.client.blpop([wake], timeout=block_s)
        finally:
            # Like _forget: the set and the list expire on their own if this fails.
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    pipe.srem(waiters, wake).delete(wake).execute()
            except redis.RedisError as exc:
                log.debug("could not leave the waiters of group %r: %s", group_id, exc)

    def _verified(self, payload: bytes) -> dict[str, Any] | None:
        if not payload:
            return None
        try:
            row = self.signer.loads(payload)
        except SignatureError as exc:
            log.warning("ignored a result notification that does not verify: %s", exc)
            return None
        return row if isinstance(row, dict) else None


def notify_safely(
    notifier: Notifier | None,
    task_ids: Sequence[str],
    rows: Mapping[str, Mapping[str, Any]] | None = None,
) -> set[str]:
    """Notify (see ``Notifier.notify``), but never let a notification failure disturb the monitor.

    Waking waiters is a courtesy (they also look once a second on their own):
    it must never keep results from being acknowledged.
    """
    try:
        if notifier is not None:
            return notifier.notify(task_ids, rows)
    except BrokerError:
        pass  # an outage: the broker's own retries report it
    except Exception:
        log.exception("could not notify waiters of %d task(s)", len(task_ids))
    return set()


def notify_groups_safely(notifier: Notifier | None, group_ids: Iterable[str]) -> None:
    """``Notifier.notify_groups``, with the same failure rules as ``notify_safely``."""
    try:
        if notifier is not None:
            notifier.notify_groups(group_ids)
    except BrokerError:
        pass
    except Exception:
        log.exception("could not notify group waiters")


def _fits(row: Mapping[str, Any] | None) -> bool:
    """Whether a row can be handed over in a notification (else the waiter reads the store)."""
    if row is None:
        return False
    result = row.get("result")
    return result is None or len(result) <= PAYLOAD_LIMIT
