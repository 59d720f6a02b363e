"""One round of the pusher, the monitor and the scheduler, each built from small fakes.

The fakes implement only the few broker and store methods a thread calls;
no thread is started and no server is needed (the scheduler claims its
schedules in a SQLite file, as the embedded default does).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

import qengine
from qengine.brokers.base import Delivery
from qengine.cluster.monitor import Monitor
from qengine.cluster.pool import HandBack
from qengine.cluster.pusher import Pusher
from qengine.cluster.scheduler import LOOK_AGAIN_S, Scheduler
from qengine.cluster.state import Counters, Held, Holdings, task_timeout
from qengine.config import Config
from qengine.errors import BrokerError
from qengine.outcomes import failed_outcome
from qengine.runtime import get_store
from qengine.schedules import Schedule, schedule, slot_task_id
from qengine.signing import Signer
from qengine.store import dumps
from qengine.task import TaskMessage, new_id

SECRET = "tick-tests"


class FakeBroker:
    """An in-memory queue with leases that never expire; records what it was asked."""

    receive_wait_s = 0.0

    def __init__(self, *packages: bytes | Delivery) -> None:
        self.waiting = [
            p if isinstance(p, Delivery) else Delivery(f"ack-{n}", p)
            for n, p in enumerate(packages)
        ]
        self.failed: list[str] = []
        self.acknowledged: list[str] = []
        self.enqueued: list[bytes] = []
        self.unique_keys: set[str] = set()
        self.refuse_acks = False

    def receive(self, count: int = 1, timeout: float = 0) -> list[Delivery]:
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return taken

    def queue_size(self) -> int:
        return len(self.waiting)

    def fail(self, ack_id: str) -> None:
        self.failed.append(ack_id)

    def acknowledge(self, ack_id: str) -> None:
        self.acknowledge_many([ack_id])

    def acknowledge_many(self, ack_ids: list[str]) -> None:
        if self.refuse_acks:
            raise BrokerError("broker down")
        self.acknowledged.extend(ack_ids)

    def enqueues_with(self, store_url: str) -> bool:
        return False

    def enqueue_unique(self, package: bytes, key: str) -> str | None:
        if key in self.unique_keys:
            return None
        self.unique_keys.add(key)
        self.enqueued.append(package)
        return key


class FakeStore:
    """Stored successes by task id: all the pusher asks a store."""

    def __init__(self, *succeeded: str) -> None:
        self.succeeded = set(succeeded)

    def get(self, task_id: str) -> SimpleNamespace | None:
        return SimpleNamespace(success=True) if task_id in self.succeeded else None


def message(**fields) -> TaskMessage:
    return TaskMessage(id=new_id()[0], name="t", func="tests.tasks.add", args=(1, 2), **fields)


# -- the pusher --------------------------------------------------------------------------


class PusherBench:
    def __init__(self, broker: FakeBroker, store: FakeStore | None = None, **keys) -> None:
        self.config = Config(secret_key=SECRET, **{"bulk": 10, **keys})
        self.signer = Signer.for_config(self.config, SECRET)
        self.broker = broker
        self.holdings = Holdings(4)
        self.counters = Counters()
        self.dispatched: list[Held] = []
        self.given_up: list[tuple[Held, str]] = []
        self.stop_event = threading.Event()
        self.pusher = Pusher(
            config=self.config, broker=broker, signer=self.signer, store=store or FakeStore(),
            holdings=self.holdings, counters=self.counters, dispatch=self.dispatched.extend,
            give_up=self.give_up, stop_event=self.stop_event, label="test",
        )  # fmt: skip

    def give_up(self, held: Held, reason: str, **_keys) -> None:
        self.given_up.append((held, reason))


def signed(*messages: TaskMessage, config: Config | None = None) -> list[bytes]:
    signer = Signer.for_config(config or Config(secret_key=SECRET), SECRET)
    return [signer.dumps(m) for m in messages]


def test_pusher_tick_holds_and_dispatches_what_verifies_and_drops_the_rest():
    good = message()
    broker = FakeBroker(b"not a package", *signed(good))
    bench = PusherBench(broker)
    assert bench.pusher.tick() == 2
    assert [held.message.id for held in bench.dispatched] == [good.id]
    assert bench.dispatched[0].message.attempt_count == 1
    assert len(bench.holdings) == 1
    assert broker.failed == ["ack-0"]
    assert bench.counters.rejected == 1


def test_a_tasks_timeout_is_its_own_else_the_clusters_decided_when_it_is_taken():
    assert task_timeout(message(timeout=3), 10) == 3
    assert task_timeout(message(), 10) == 10
    assert task_timeout(message(), None) is None
    own, default = message(timeout=3), message()
    bench = PusherBench(FakeBroker(*signed(own, default)), timeout=10)
    bench.pusher.tick()
    assert [held.timeout_s for held in bench.dispatched] == [3, 10]
    assert bench.dispatched[1].message.timeout is None, "the message stays as it was sent"


def test_pusher_tick_takes_no_more_than_the_holdings_have_room_for():
    broker = FakeBroker(*signed(*(message() for _ in range(6))))
    bench = PusherBench(broker)
    assert bench.pusher.tick() == 4
    assert broker.queue_size() == 2
    assert bench.pusher.tick() == 0  # full: it waits for room instead


def test_pusher_tick_acknowledges_a_redelivered_task_whose_success_is_stored():
    done, again = message(), message()
    first, second = signed(done, again)
    broker = FakeBroker(Delivery("a", first, 2), Delivery("b", second, 2))
    bench = PusherBench(broker, FakeStore(done.id))
    bench.pusher.tick()
    assert broker.acknowledged == ["a"]
    assert [held.message.id for held in bench.dispatched] == [again.id]
    assert bench.counters.redeliveries == 2


def test_pusher_tick_gives_up_a_task_delivered_past_max_attempts():
    (package,) = signed(message())
    bench = PusherBench(FakeBroker(Delivery("a", package, 3)), max_attempts=2)
    bench.pusher.tick()
    assert bench.dispatched == []
    [(held, reason)] = bench.given_up
    assert "gave up after 2 attempts" in reason
    assert bench.holdings.get(held.seq) is held  # held until the monitor settles it


def test_pusher_tick_with_run_once_stops_the_cluster_when_the_queue_is_empty():
    bench = PusherBench(FakeBroker())
    bench.pusher.run_once = True
    assert bench.pusher.tick() == 0
    assert bench.stop_event.is_set()


# -- the monitor -------------------------------------------------------------------------


class MonitorBench:
    def __init__(self, **keys) -> None:
        self.config = Config(secret_key=SECRET, **keys)
        self.broker = FakeBroker()
        self.holdings = Holdings(8)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.counters = Counters()
        self.finished: list[list] = []
        self.workers: dict[int, int] = {}
        self.broken: list[int] = []
        self.monitor = Monitor(
            config=self.config, broker=self.broker, holdings=self.holdings,
            results=self.results, finish=self.finished.append, counters=self.counters,
            note_worker=self.workers.__setitem__, report_broken=self.broken.extend, label="test",
        )  # fmt: skip

    def hold(self) -> Held:
        seq = self.holdings.next_seq()
        held = Held(seq=seq, delivery=Delivery(f"ack-{seq}", b""), message=message())
        self.holdings.add([held])
        return held

    def hand_back(self, *rows: tuple[Held, bool]) -> None:
        """A finished hand-off of these tasks, as the pool's future carries it."""
        future: Future = Future()
        now = datetime.now(UTC)
        seqs = [held.seq for held, _ in rows]
        oks = [ok for _, ok in rows]
        times = [now] * len(rows)
        blobs = [dumps(ok) for ok in oks]
        future.set_result(HandBack(4242, 1000, seqs, oks, blobs, times, times, [False] * len(rows)))
        self.results.put((seqs, future))


def test_monitor_tick_saves_acknowledges_releases_and_counts_a_hand_off():
    bench = MonitorBench()
    ok, failed = bench.hold(), bench.hold()
    bench.hand_back((ok, True), (failed, False))
    assert bench.monitor.tick(wait_s=0) == 2
    [saved] = bench.finished
    assert [(o.message.id, o.success, o.pid) for o in saved] == [
        (ok.message.id, True, 4242),
        (failed.message.id, False, 4242),
    ]
    # A failure is not acknowledged (ack_failures is off): the broker delivers it again.
    assert bench.broker.acknowledged == [ok.delivery.ack_id]
    assert len(bench.holdings) == 0
    assert (bench.counters.processed, bench.counters.failed) == (2, 1)
    assert bench.workers == {4242: 1000}


def test_monitor_tick_acknowledges_a_task_the_cluster_gave_up():
    bench = MonitorBench()
    held = bench.hold()
    held.given_up = True
    bench.results.put((None, [(held, failed_outcome(held.message, "worker died"))]))
    assert bench.monitor.tick(wait_s=0) == 1
    assert bench.broker.acknowledged == [held.delivery.ack_id]


def test_monitor_tick_reports_a_hand_off_that_came_back_without_outcomes():
    bench = MonitorBench()
    held = bench.hold()
    cancelled: Future = Future()
    cancelled.cancel()
    bench.results.put(([held.seq], cancelled))
    assert bench.monitor.tick(wait_s=0) == 0
    assert bench.broken == [held.seq]
    assert bench.holdings.get(held.seq) is held


def test_monitor_keeps_tasks_held_while_the_broker_refuses_acknowledgements():
    bench = MonitorBench()
    held = bench.hold()
    bench.broker.refuse_acks = True
    bench.hand_back((held, True))
    bench.monitor.tick(wait_s=0)
    assert bench.monitor.unacked_count() == 1
    assert bench.holdings.get(held.seq) is held  # its lease is renewed meanwhile
    bench.broker.refuse_acks = False
    bench.monitor.ack_retry_at = 0  # the backoff is over
    bench.monitor.tick(wait_s=0)
    assert bench.broker.acknowledged == [held.delivery.ack_id]
    assert len(bench.holdings) == 0


# -- the scheduler -----------------------------------------------------------------------


@pytest.fixture
def scheduler(tmp_path) -> SimpleNamespace:
    config = qengine.configure(store=f"sqlite:///{tmp_path}/ticks.sqlite3", secret_key=SECRET)
    broker = FakeBroker()
    signer = Signer.for_config(config, SECRET)
    thread = Scheduler(
        config=config, broker=broker, store=get_store(config), signer=signer,
        stop_event=threading.Event(), label="test",
    )  # fmt: skip
    return SimpleNamespace(thread=thread, broker=broker, signer=signer, config=config)


def test_scheduler_tick_queues_a_due_slot_once_under_the_slots_own_id(scheduler):
    now = datetime.now(UTC)
    item = schedule("math.floor", 1.5, name="due", next_run=now - timedelta(seconds=1))
    assert 0 < scheduler.thread.tick(now) <= LOOK_AGAIN_S
    [package] = scheduler.broker.enqueued
    queued = scheduler.signer.loads(package, TaskMessage)
    assert queued.id == slot_task_id(scheduler.config.name, item.id, item.next_run)
    assert (queued.func, queued.args, queued.sync) == ("math.floor", (1.5,), False)
    assert Schedule.get(item.id) is None  # a ONCE schedule is done
    scheduler.thread.tick(now)
    assert len(scheduler.broker.enqueued) == 1


def test_scheduler_tick_leaves_a_schedule_that_is_not_due(scheduler):
    now = datetime.now(UTC)
    item = schedule("math.floor", 1.5, name="later", next_run=now + timedelta(minutes=5))
    assert scheduler.thread.tick(now) == LOOK_AGAIN_S
    assert scheduler.broker.enqueued == []
    assert Schedule.get(item.id) is not None
