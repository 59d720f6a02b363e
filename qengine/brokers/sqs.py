"""The Amazon SQS broker: one standard queue per cluster name, leased by visibility timeout."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..config import Config
from ..errors import BrokerError, BrokerUnavailable, ConfigError, PackageTooLarge
from .base import Broker, Delivery

__all__ = ["MAX_MESSAGE_BYTES", "SQSBroker", "queue_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_BYTES = 256 * 1024
"""SQS's limit on a message, body and attributes together, and on a batch (the spec's 256 KB)."""

MAX_BATCH = 10
"""Most messages one SendMessageBatch, ReceiveMessage or DeleteMessageBatch call handles."""

MAX_WAIT_S = 20
"""Longest long poll SQS allows."""

MAX_VISIBILITY_S = 43_200
"""Longest visibility timeout SQS allows (12 hours)."""

RETENTION_S = 1_209_600
"""Message retention of the queues we create: SQS's maximum, 14 days (its default is 4)."""

BODY = "qengine"
"""Every message's body: SQS bodies are text, so the package travels as a binary attribute."""

ATTRIBUTE = "p"
"""The binary message attribute that holds the package."""

_OVERHEAD = len(BODY) + len(ATTRIBUTE) + len("Binary")
"""What SQS counts besides the package: the body, the attribute's name and its type."""

TOMBSTONES = 10_000
"""Most ids of deleted-before-delivery packages one instance remembers."""

_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_UNREACHABLE = (BotoConnectionError, ReadTimeoutError)


def queue_name(name: str) -> str:
    """The SQS queue name of a cluster name.

    SQS accepts 1 to 80 characters of ``[A-Za-z0-9_-]``; a valid cluster name is
    used as it is. Any other name keeps its allowed characters (the rest become
    ``_``), cut to 71 characters, and gets ``-`` and 8 hex digits of its SHA-1, so
    two names that differ only in replaced characters still get two queues.
    """
    if _VALID_NAME.fullmatch(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:71]
    return f"{cleaned}-{digest}"


def visibility_s(retry: float) -> int:
    """The visibility timeout for ``retry``: SQS counts whole seconds, so round up."""
    return min(MAX_VISIBILITY_S, max(1, math.ceil(retry)))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def session_options(settings: dict[str, Any]) -> dict[str, Any]:
    """``boto3.session.Session`` arguments from the ``sqs`` config dict (``aws_region`` renamed)."""
    options = {key: value for key, value in settings.items() if key != "endpoint_url"}
    if "aws_region" in options:
        options["region_name"] = options.pop("aws_region")
    return options


@dataclass(slots=True)
class _Lease:
    """A message this instance received: the receipt SQS wants back, and when the lease ends."""

    receipt: str
    until: float


class SQSBroker(Broker):
    """A queue as an SQS standard queue named after the cluster (see ``queue_name``).

    Receiving hides a message for ``retry`` seconds (its visibility timeout,
    rounded up to whole seconds); ``extend`` pushes that back and acknowledging
    deletes it. A message not acknowledged in time becomes visible again and
    SQS counts the delivery (ApproximateReceiveCount). SQS wants the receipt of
    the latest delivery for all of that, so an instance acknowledges and
    extends only what it received itself. Standard queues keep order on a
    best-effort basis and may, rarely, deliver a message twice.

    Credentials and region come from the ``sqs`` config key, else from boto3's
    own chain (environment, shared files, instance role).
    """

    product = "Amazon SQS"

    receive_wait_s = 1.0
    """One long poll per pusher round: an idle cluster makes two requests a second
    (the poll and a last look at its deadline), not one every ``poll`` seconds."""

    package_limit_bytes = MAX_MESSAGE_BYTES - _OVERHEAD

    def __init__(
        self, config: Config, list_key: str | None = None, *, connection: Any = None
    ) -> None:
        """Build the SQS client now (no request is made); the queue is created on first use.

        Args:
            connection: a boto3 SQS client to use instead of one made from ``sqs``.
        """
        super().__init__(config, list_key)
        settings = dict(config.sqs or {})
        self._owns_client = connection is None
        if connection is None:
            try:
                session = boto3.session.Session(**session_options(settings))
                connection = session.client(
                    "sqs",
                    endpoint_url=settings.get("endpoint_url"),
                    # Reads must outlast the longest long poll; a few quick retries ride out
                    # throttling and dropped connections without stalling ping for long.
                    config=BotoConfig(
                        connect_timeout=5,
                        read_timeout=MAX_WAIT_S + 10,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                )
            except NoRegionError as exc:
                raise ConfigError(
                    "config key 'sqs' names no region: add 'aws_region' to it, or set "
                    "AWS_DEFAULT_REGION or a boto3 profile with a region"
                ) from exc
            except BotoCoreError as exc:
                raise ConfigError(f"config key 'sqs' cannot make an SQS client: {exc}") from exc
        self.connection = connection
        self.queue_name = queue_name(self.list_key)
        if self.queue_name != self.list_key:
            log.info("queue %r is the SQS queue %r", self.list_key, self.queue_name)
        self.endpoint = str(connection.meta.endpoint_url)
        self._visibility_s = visibility_s(config.retry)
        self._url: str | None = None
        self._held: dict[str, _Lease] = {}
        self._tombstones: dict[str, None] = {}
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate botocore errors into ours, naming the queue and the endpoint."""
        where = f"SQS at {self.endpoint}"
        try:
            yield
        except NoCredentialsError as exc:
            raise ConfigError(
                f"{where} needs credentials to {action} queue {self.queue_name!r}: set "
                "'aws_access_key_id' and 'aws_secret_access_key' in config key 'sqs', or "
                "configure boto3's credential chain"
            ) from exc
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(
                f"{where} cannot be reached to {action} queue {self.queue_name!r}: {exc}"
            ) from exc
        except ClientError as exc:
            hint = ""
            if _code(exc).endswith("QueueDeletedRecently"):
                hint = " (SQS refuses to recreate a queue for 60 seconds after deleting it)"
            elif _code(exc).endswith("PurgeQueueInProgress"):
                hint = " (SQS allows one purge per queue every 60 seconds)"
            raise BrokerError(
                f"{where} failed to {action} queue {self.queue_name!r}: {exc}{hint}"
            ) from exc
        except BotoCoreError as exc:
            raise BrokerError(
                f"{where} failed to {action} queue {self.queue_name!r}: {exc}"
            ) from exc

    def _queue_url(self, *, create: bool) -> str | None:
        """The queue's URL, cached; created when missing and ``create``, else None."""
        url = self._url
        if url is not None:
            return url
        try:
            url = str(self.connection.get_queue_url(QueueName=self.queue_name)["QueueUrl"])
        except ClientError as exc:
            if _code(exc) not in _MISSING_QUEUE:
                raise
            if not create:
                return None
            # Two creators with the same attributes both succeed: CreateQueue is idempotent.
            url = str(
                self.connection.create_queue(
                    QueueName=self.queue_name,
                    Attributes={
                        "VisibilityTimeout": str(self._visibility_s),
                        "MessageRetentionPeriod": str(RETENTION_S),
                    },
                )["QueueUrl"]
            )
            log.info("queue %r: created the SQS queue %r", self.list_key, self.queue_name)
        self._url = url
        return url

    def _call(self, work: Callable[[str], T], *, create: bool = True) -> T | None:
        """Run ``work(queue_url)``, once more after (re)creating the queue if it vanished.

        The queue goes when any instance deletes it; the others learn of it from the
        error and make it anew. Returns None when the queue is missing and not ``create``.
        """
        for attempt in (1, 2):
            url = self._queue_url(create=create)
            if url is None:
                return None
            try:
                return work(url)
            except ClientError as exc:
                if _code(exc) not in _MISSING_QUEUE or attempt == 2:
                    raise
                self._url = None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _batch(self, operation: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Run a batch ``operation`` on messages of the queue; a missing queue has none."""
        reply = self._call(
            lambda url: getattr(self.connection, operation)(QueueUrl=url, Entries=entries),
            create=False,
        )
        return dict(reply or {})

    def _check_size(self, package: bytes) -> None:
        size = len(package) + _OVERHEAD
        if size > MAX_MESSAGE_BYTES:
            raise PackageTooLarge(
                f"package of {len(package)} bytes is too large for SQS queue "
                f"{self.queue_name!r}: a message may hold {self.package_limit_bytes} bytes "
                f"({MAX_MESSAGE_BYTES // 1024} KiB with its attributes); pass large data by "
                "reference (a path or a key) instead"
            )

    @staticmethod
    def _entry(entry_id: str, package: bytes) -> dict[str, Any]:
        return {
            "Id": entry_id,
            "MessageBody": BODY,
            "MessageAttributes": {ATTRIBUTE: {"DataType": "Binary", "BinaryValue": package}},
        }

    # -- producing ------------------------------------------------------------------

    def enqueue(self, package: bytes) -> str:
        self._check_size(package)
        entry = self._entry("0", package)
        del entry["Id"]
        with self._errors("enqueue to"):
            reply = self._call(lambda url: self.connection.send_message(QueueUrl=url, **entry))
        assert reply is not None
        return str(reply["MessageId"])

    def enqueue_many(self, packages: Iterable[bytes]) -> list[str]:
        """Send in batches of up to 10 messages and 256 KiB.

        Not atomic: when a batch fails, the batches before it are in the queue.
        """
        batches: list[list[bytes]] = [[]]
        size = 0
        for package in packages:
            self._check_size(package)
            weight = len(package) + _OVERHEAD
            if len(batches[-1]) == MAX_BATCH or (batches[-1] and size + weight > MAX_MESSAGE_BYTES):
                batches.append([])
                size = 0
            batches[-1].append(package)
            size += weight
        ids: list[str] = []
        with self._errors("enqueue to"):
            for batch in batches:
                if batch:
                    ids.extend(self._send_batch(batch))
        return ids

    def _send_batch(self, batch: list[bytes]) -> list[str]:
        entries = [self._entry(str(i), package) for i, package in enumerate(batch)]
        reply = self._call(
            lambda url: self.connection.send_message_batch(QueueUrl=url, Entries=entries)
        )
        assert reply is not None
        if reply.get("Failed"):
            first = reply["Failed"][0]
            raise BrokerError(
                f"SQS at {self.endpoint} refused {len(reply['Failed'])} of {len(batch)} "
                f"packages for queue {self.queue_name!r}: {first.get('Code')}: "
                f"{first.get('Message')}"
            )
        by_entry = {item["Id"]: str(item["MessageId"]) for item in reply["Successful"]}
        return [by_entry[str(i)] for i in range(len(batch))]

    # -- consuming ------------------------------------------------------------------

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Lease up to ``count`` packages (at most 10, SQS's limit), waiting up to ``timeout``.

        ``timeout`` defaults to one second. Whole seconds are waited in long polls;
        what remains under a second is polled every ``poll`` seconds, and one last
        poll at the deadline catches leases that ran out while a long poll waited.
        """
        count = max(1, min(count or self.config.receive_count, MAX_BATCH))
        wait_s = 1.0 if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + wait_s
        with self._errors("receive from"):
            while True:
                left = deadline - time.monotonic()
                # Microseconds have passed since the deadline was set: a 1 s timeout
                # is still a 1 s long poll, not a second of short polls.
                long_s = max(0, min(MAX_WAIT_S, int(left + 0.05)))
                deliveries = self._receive_once(count, long_s)
                if deliveries:
                    return deliveries
                left = deadline - time.monotonic()
                if left <= 0 and long_s == 0:
                    return []
                if long_s == 0:
                    time.sleep(min(self.config.poll, left))

    def _receive_once(self, count: int, wait_s: int) -> list[Delivery]:
        reply = self._call(
            lambda url: self.connection.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=self._visibility_s,
                MessageAttributeNames=[ATTRIBUTE],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        messages = (reply or {}).get("Messages", [])
        until = time.monotonic() + self._visibility_s
        deliveries: list[Delivery] = []
        dropped: list[str] = []
        with self._lock:
            self._forget_expired()
            for message in messages:
                message_id = str(message["MessageId"])
                self._held[message_id] = _Lease(message["ReceiptHandle"], until)
                if message_id in self._tombstones:
                    del self._tombstones[message_id]
                    dropped.append(message_id)
                    continue
                attribute = message.get("MessageAttributes", {}).get(ATTRIBUTE)
                # A message someone else put in the queue has no package: hand over its
                # body, which fails verification, so the cluster drops it.
                package = attribute["BinaryValue"] if attribute else message["Body"].encode()
                count_ = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                deliveries.append(Delivery(message_id, bytes(package), count_))
        if dropped:
            self._delete_held(dropped)
        return deliveries

    def _forget_expired(self) -> None:
        """Drop receipts of leases that ended long ago (another consumer has the message now).

        Callers hold ``_lock``. Run on receive, so the map cannot grow without bound.
        """
        if len(self._held) < 1000:
            return
        stale = time.monotonic() - 3600
        for message_id in [m for m, lease in self._held.items() if lease.until < stale]:
            del self._held[message_id]

    def acknowledge(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def acknowledge_many(self, ack_ids: Iterable[str]) -> None:
        """Delete the messages, 10 per DeleteMessageBatch call.

        An id this instance did not receive has no receipt to delete it with; it is
        remembered and the message deleted when it arrives here (see ``delete``).
        """
        with self._errors("acknowledge on"):
            self._delete_held(list(ack_ids))

    def _delete_held(self, ack_ids: list[str]) -> None:
        with self._lock:
            receipts: list[tuple[str, str]] = []
            for ack_id in ack_ids:
                lease = self._held.pop(ack_id, None)
                if lease is None:
                    self._tombstone(ack_id)
                else:
                    receipts.append((ack_id, lease.receipt))
        for start in range(0, len(receipts), MAX_BATCH):
            chunk = receipts[start : start + MAX_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": receipt} for i, (_id, receipt) in enumerate(chunk)
            ]
            reply = self._batch("delete_message_batch", entries)
            for failure in reply.get("Failed", []):
                # Usually a receipt of a lease that ran out: the message is someone else's now.
                log.debug(
                    "queue %r: SQS did not delete a message: %s",
                    self.list_key,
                    failure.get("Code"),
                )

    def _tombstone(self, ack_id: str) -> None:
        """Remember to delete ``ack_id`` on arrival; callers hold ``_lock``."""
        self._tombstones[ack_id] = None
        if len(self._tombstones) > TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]

    def extend(self, ack_ids: Iterable[str]) -> None:
        """Hide the messages for another ``retry`` seconds (ChangeMessageVisibilityBatch).

        Only leases this instance holds and that have not run out yet are renewed: once
        a lease has run out the message may be another consumer's, whose lease a stale
        receipt must not stretch.
        """
        now = time.monotonic()
        with self._lock:
            held = [
                (ack_id, lease)
                for ack_id in ack_ids
                if (lease := self._held.get(ack_id)) is not None and lease.until > now
            ]
        if not held:
            return
        with self._errors("extend leases on"):
            for start in range(0, len(held), MAX_BATCH):
                chunk = held[start : start + MAX_BATCH]
                entries = [
                    {
                        "Id": str(i),
                        "ReceiptHandle": lease.receipt,
                        "VisibilityTimeout": self._visibility_s,
                    }
                    for i, (_id, lease) in enumerate(chunk)
                ]
                reply = self._batch("change_message_visibility_batch", entries)
                failed = {item["Id"] for item in reply.get("Failed", [])}
                until = now + self._visibility_s
                with self._lock:
                    for i, (_id, lease) in enumerate(chunk):
                        if str(i) not in failed:
                            lease.until = until

    def delete(self, ack_id: str) -> None:
        """Remove a package: at once if this instance received it, else when it arrives here.

        SQS deletes only by the receipt of a delivery, so a package this instance has
        not received is deleted when it is delivered to this instance, never handed
        out by it; another instance on the same queue may still deliver it.
        """
        self.acknowledge_many([ack_id])

    # -- the queue as a whole -------------------------------------------------------

    def _attributes(self) -> dict[str, str]:
        with self._errors("measure"):
            reply = self._call(
                lambda url: self.connection.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                ),
                create=False,
            )
        return dict((reply or {}).get("Attributes", {}))

    def queue_size(self) -> int:
        """Messages waiting (ApproximateNumberOfMessages: SQS's estimate)."""
        return int(self._attributes().get("ApproximateNumberOfMessages", 0))

    def lock_size(self) -> int:
        """Messages leased (ApproximateNumberOfMessagesNotVisible: SQS's estimate)."""
        return int(self._attributes().get("ApproximateNumberOfMessagesNotVisible", 0))

    def purge_queue(self) -> None:
        """Delete every message (PurgeQueue: SQS allows one per queue every 60 seconds)."""
        with self._errors("purge"):
            self._call(lambda url: self.connection.purge_queue(QueueUrl=url), create=False)
        with self._lock:
            self._held.clear()

    def delete_queue(self) -> None:
        """Delete the SQS queue; the next use creates it again.

        SQS refuses to create a queue of the same name for 60 seconds after that.
        """
        with self._errors("delete"):
            self._call(lambda url: self.connection.delete_queue(QueueUrl=url), create=False)
        self._url = None
        with self._lock:
            self._held.clear()

    def ping(self) -> bool:
        try:
            self.connection.get_queue_url(QueueName=self.queue_name)
        except ClientError as exc:
            return _code(exc) in _MISSING_QUEUE  # it answered: reachable
        except Exception:  # ping promises a bool whatever went wrong
            return False
        return True

    def info(self) -> str:
        return f"Amazon SQS at {self.endpoint} (queue {self.queue_name})"

    def close(self) -> None:
        """Release our own client's connection pool (the queue itself stays)."""
        if self._owns_client:
            self.connection.close()

    def __repr__(self) -> str:
        return f"<SQSBroker queue={self.queue_name!r} endpoint={self.endpoint!r}>"
