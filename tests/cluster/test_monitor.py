"""The monitor thread in this process: what it does with a batch it cannot finish."""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import partial

import pytest

import qengine
from qengine.brokers import make_broker
from qengine.chains import continue_chain
from qengine.cluster.monitor import Monitor
from qengine.cluster.pool import HandBack
from qengine.cluster.reporting import ReportingThread
from qengine.cluster.state import Counters, Held, Holdings
from qengine.cluster.workers import Results
from qengine.errors import BrokerError, StoreError
from qengine.outcomes import finish
from qengine.runtime import get_signer, get_store
from qengine.store import dumps
from qengine.task import TaskMessage, new_id
from tests.qengine.test_store import outcome


@pytest.fixture
def config(embedded) -> qengine.Config:
    # A retry of 1 s, so a package let go comes back within the test.
    return qengine.configure(embedded, retry=1, timeout=0.5)


class MonitorBench:
    """A monitor in this process with the real broker and store of ``config``; no pool."""

    def __init__(self, config: qengine.Config) -> None:
        self.config = config
        self.broker = make_broker(config)
        self.store = get_store(config)
        self.holdings = Holdings(8)
        self.results: Results = queue.SimpleQueue()
        self.counters = Counters()
        self.reported: list[int] = []
        self.monitor = Monitor(
            config=config, broker=self.broker, holdings=self.holdings, results=self.results,
            finish=partial(finish, config=config, broker=self.broker, store=self.store),
            counters=self.counters, note_worker=lambda pid, rss: None,
            report_broken=self.reported.extend, label="test",
        )  # fmt: skip


def held_task(cluster: MonitorBench) -> tuple[Held, TaskMessage]:
    message = TaskMessage(id=new_id()[0], name="held", func="tests.tasks.add", args=(1, 2))
    cluster.broker.enqueue(get_signer(cluster.config).dumps(message))
    (delivery,) = cluster.broker.receive(timeout=1)
    held = Held(seq=cluster.holdings.next_seq(), delivery=delivery, message=message)
    cluster.holdings.add([held])
    return held, message


def test_a_batch_that_cannot_be_finished_is_let_go_for_redelivery(config, monkeypatch, caplog):
    cluster = MonitorBench(config)
    held, message = held_task(cluster)
    done = outcome(3, task_id=message.id)

    def broken(rows):
        raise RuntimeError("not a store outage")

    monkeypatch.setattr(cluster.store, "save_rows", broken)
    with caplog.at_level(logging.ERROR):
        cluster.monitor.settle([(held, done)])
    # Not held any more (a stop would otherwise wait on it for ever) ...
    assert len(cluster.holdings) == 0
    assert "will be delivered again" in caplog.text
    # ... and not acknowledged: the broker hands it out again after ``retry``.
    time.sleep(1.2)
    (again,) = cluster.broker.receive(timeout=1)
    assert again.count == 2
    cluster.broker.acknowledge(again.ack_id)
    cluster.broker.close()


def test_a_cancelled_hand_off_is_reported_and_the_rest_of_its_batch_saved(config):
    # A replaced pool cancels the hand-offs it had not started; one batch of the monitor can
    # hold such a hand-off beside finished ones.
    cluster = MonitorBench(config)
    reported = cluster.reported
    cancelled_task, _ = held_task(cluster)
    finished_task, message = held_task(cluster)
    cancelled: Future = Future()
    cancelled.cancel()
    finished: Future = Future()
    now = datetime.now(UTC)
    finished.set_result(
        HandBack(123, 0, [finished_task.seq], [True], [dumps(3)], [now], [now], [False])
    )
    cluster.results.put(([cancelled_task.seq], cancelled))
    cluster.results.put(([finished_task.seq], finished))
    assert cluster.monitor.tick() == 1
    assert reported == [cancelled_task.seq]  # the guard runs it again
    assert cluster.store.get(message.id).result == 3
    assert cluster.holdings.get(finished_task.seq) is None  # acknowledged and let go
    cluster.broker.close()


def test_a_chain_that_cannot_be_queued_is_logged_and_the_task_kept(config, monkeypatch, caplog):
    broker = make_broker(config)
    done = outcome("first link")
    done.message.chain = [("tests.tasks.add", (1, 2), {})]

    def refuse(package):
        raise BrokerError("broker gone")

    monkeypatch.setattr(broker, "enqueue", refuse)
    with caplog.at_level(logging.ERROR):
        finish([done], config, broker=broker, continue_chain=continue_chain)
    assert get_store(config).get(done.message.id).result == "first link"
    assert "rest of its chain could not be queued" in caplog.text
    broker.close()


def test_a_chained_task_finished_without_a_way_to_continue_it_is_logged_and_kept(config, caplog):
    done = outcome("first link")
    done.message.chain = [("tests.tasks.add", (1, 2), {})]
    with caplog.at_level(logging.ERROR):
        finish([done], config)
    assert get_store(config).get(done.message.id).result == "first link"
    assert "no continue_chain" in caplog.text


def slow_reporting(config, tmp_path, seconds):
    reports = tmp_path / "reports.txt"
    config = config.replace(
        error_reporter={"tests.reporters.SlowReporter": {"path": str(reports), "seconds": seconds}}
    )
    return config, reports, ReportingThread(config)


def test_a_blocking_reporter_does_not_hold_up_the_monitor(config, tmp_path):
    config, reports, reporting = slow_reporting(config, tmp_path, seconds=1.0)
    reporting.start()
    failed = outcome("boom", success=False)
    started = time.monotonic()
    finish([failed], config, report=reporting.submit)
    assert time.monotonic() - started < 0.5  # saved without waiting for the report
    assert get_store(config).get(failed.message.id).success is False
    reporting.stop(timeout=5)  # a stop sends what is queued
    assert reports.read_text().split() == [failed.message.id]


def test_reports_beyond_the_limit_are_dropped_and_counted(config, tmp_path, caplog):
    config, reports, reporting = slow_reporting(config, tmp_path, seconds=0.3)
    reporting.limit = 2
    reporting.start()
    failures = [outcome(n, success=False) for n in range(5)]
    with caplog.at_level(logging.WARNING):
        for failed in failures:
            reporting.submit([failed], config)
        reporting.stop(timeout=5)
    assert reporting.dropped == 3
    assert reports.read_text().split() == [f.message.id for f in failures[:2]]
    assert "dropping reports" in caplog.text


def test_a_batch_retried_after_a_cache_error_is_reported_once(config, monkeypatch):
    store = get_store(config)
    failed = outcome("boom", success=False)
    failed.message.cached = True
    cache_task = store.cache_task
    attempts: list[int] = []

    def flaky(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise StoreError("cache down for a moment")
        return cache_task(*args, **kwargs)

    monkeypatch.setattr(store, "cache_task", flaky)
    reported: list[str] = []

    def report(outcomes, _config):
        reported.extend(o.message.id for o in outcomes if not o.success)

    with pytest.raises(StoreError):
        finish([failed], config, store=store, report=report)
    finish([failed], config, store=store, report=report)  # the monitor's retry
    assert reported == [failed.message.id]
    assert store.cached(failed.message.id).success is False
    store.delete_cached(failed.message.id)
