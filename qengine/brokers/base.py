"""The broker contract every queue backend fulfils (the spec's ``Broker``, plus leases)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ..config import Config

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from ..snapshots import SnapshotStore

__all__ = ["Broker", "Delivery"]


class Delivery(NamedTuple):
    """One package handed to a cluster: its receipt, its bytes, and how often it was delivered."""

    ack_id: str
    package: bytes
    count: int = 1  # type: ignore[assignment]  # shadows tuple.count on purpose: reads well


UNIQUE_TTL_S = 86_400
"""How long ``enqueue_unique`` remembers a key: far longer than a claim is ever retried."""


class Broker(ABC):
    """Accepts, keeps and delivers packages for one queue: the cluster name.

    Delivery receipts: a dequeued package is leased to its consumer until it
    is acknowledged; if the lease runs out (``retry`` seconds without
    ``extend``), the package is delivered again. A package is ``bytes``.

    Subclasses implement ``enqueue``, ``receive`` (or the spec's ``dequeue``),
    ``acknowledge``, ``delete``, ``queue_size``, ``purge_queue``,
    ``delete_queue`` and ``ping``; the rest have working defaults.
    """

    receive_wait_s: float = 0.5
    """How long the cluster's pusher lets one ``receive`` wait when the queue is empty.

    Short, so a stop is noticed quickly; a broker whose empty receives cost
    requests (SQS) asks for a longer one.
    """

    # -- what the rest of the engine asks of a broker (answered here for most) -----------

    notifies_results: ClassVar[bool] = False
    """Whether callers waiting for a result can be woken through this broker's server
    (``qengine.notify``); else they poll the store."""

    publishes_status: ClassVar[bool] = False
    """Whether clusters publish their status snapshots on this broker's server (see
    ``status_backend``); else in the store."""

    keeps_queue_in_sql: ClassVar[bool] = False
    """Whether the queue is rows of ``q_queue`` in a SQL database (the broker's URL), which
    a Django admin can list and an unfinished task can be found in by id."""

    product: ClassVar[str | None] = None
    """The server's name for people ("Redis"); None shows the broker's URL instead."""

    default_cache: ClassVar[str] = "store"
    """Where cached results live when ``cache`` is not set: ``"store"`` or ``"redis"``
    (this broker's Redis)."""

    @classmethod
    def status_backend(cls, config: Config) -> SnapshotStore:
        """Where clusters publish their status snapshots: the store unless the broker offers."""
        from ..snapshots import StoreSnapshots

        return StoreSnapshots(config)

    @classmethod
    def embedded_secret_url(cls, config: Config) -> str | None:
        """The local database that may keep a generated ``secret_key``, when there is one.

        Only a broker that never leaves this machine (the SQL broker on a SQLite
        file) may run without a configured key: see ``qengine.runtime.secret_key``.
        """
        del config
        return None

    def enqueues_with(self, store_url: str) -> bool:
        """Whether ``enqueue_in`` can queue a package inside a transaction of ``store_url``.

        The scheduler then claims a slot and queues its task in one transaction;
        other brokers get ``enqueue_unique`` after the claim.
        """
        del store_url
        return False

    def enqueue_in(self, conn: Connection, package: bytes) -> str:
        """Enqueue inside the caller's open transaction (only where ``enqueues_with`` says so)."""
        raise NotImplementedError(f"{type(self).__name__} cannot enqueue inside a transaction")

    def __init__(self, config: Config, list_key: str | None = None) -> None:
        self.config = config
        self.list_key = list_key or config.name

    # -- producing -----------------------------------------------------------------

    @abstractmethod
    def enqueue(self, package: bytes) -> str:
        """Put ``package`` at the end of the queue; return its tracking id."""

    def enqueue_many(self, packages: Iterable[bytes]) -> list[str]:
        """Put several packages in the queue; brokers that can batch override this."""
        return [self.enqueue(package) for package in packages]

    def enqueue_unique(self, package: bytes, key: str, ttl_s: int = UNIQUE_TTL_S) -> str | None:
        """Enqueue ``package`` unless one with this ``key`` was enqueued in the last ``ttl_s``.

        Returns the tracking id, or None when the key was seen: the scheduler
        uses it so that a slot enqueued just before its claim failed to commit
        is not enqueued again when the claim is retried. A broker that cannot
        check and enqueue in one atomic step enqueues every time (this default);
        the Redis broker checks. A SQL broker on the store's database needs no
        check: it enqueues inside the claim's own transaction.
        """
        del key, ttl_s
        return self.enqueue(package)

    # The spec calls the producing method ``async_task``; keep that name working.
    def async_task(self, package: bytes) -> str:
        return self.enqueue(package)

    # -- consuming -----------------------------------------------------------------

    def receive(self, count: int | None = None, timeout: float | None = None) -> list[Delivery]:
        """Lease up to ``count`` (default ``bulk``) packages, waiting at most ``timeout`` seconds.

        Returns an empty list when nothing arrived in time. The default wraps
        ``dequeue`` for brokers written against the spec's interface.
        """
        return [Delivery(ack_id, package) for ack_id, package in self.dequeue()]

    def dequeue(self) -> list[tuple[str, bytes]]:
        """The spec's form of ``receive``: a list of ``(ack_id, package)``."""
        if type(self).receive is Broker.receive:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither receive nor dequeue"
            )
        return [(d.ack_id, d.package) for d in self.receive()]

    @abstractmethod
    def acknowledge(self, ack_id: str) -> None:
        """The package was processed: remove it for good."""

    def acknowledge_many(self, ack_ids: Iterable[str]) -> None:
        for ack_id in ack_ids:
            self.acknowledge(ack_id)

    def extend(self, ack_ids: Iterable[str]) -> None:  # noqa: B027 - no-op is the contract
        """Renew the leases of packages this consumer still holds (heartbeat).

        Brokers without receipts have nothing to renew.
        """

    def fail(self, ack_id: str) -> None:
        """The package cannot be processed (it did not verify): drop it."""
        self.delete(ack_id)

    @abstractmethod
    def delete(self, ack_id: str) -> None:
        """Remove the package from the queue, leased or not."""

    # -- the queue as a whole ---------------------------------------------------

    @abstractmethod
    def queue_size(self) -> int:
        """Packages waiting to be delivered (not counting leased ones)."""

    def lock_size(self) -> int:
        """Packages leased and awaiting acknowledgement; 0 where unknown."""
        return 0

    @abstractmethod
    def purge_queue(self) -> None:
        """Remove every package of this queue."""

    @abstractmethod
    def delete_queue(self) -> None:
        """Remove the queue itself from the broker."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the broker can be reached; never raises."""

    def info(self) -> str:
        """Name and server version, for logs and qinfo."""
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections held by this instance."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} queue={self.list_key!r}>"

    # Brokers may carry a connection users passed in (``redis`` client, engine…).
    connection: Any = None

    package_limit_bytes: int | None = None
    """Largest package the broker's server accepts, when it has a limit of its own.

    Brokers with one (SQS: 256 KiB, MongoDB: 16 MiB documents) refuse larger
    packages at enqueue with ``PackageTooLarge``; None: only ``max_package_size``.
    """
