"""The result store on SQLite, PostgreSQL and MariaDB: the same rules on each."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from qengine.config import Config
from qengine.db import TaskRow, get_engine
from qengine.errors import StoreError
from qengine.store import ResultStore, dumps
from qengine.task import Outcome, TaskMessage, new_id


def outcome(
    value, *, success=True, task_id=None, group=None, save=None, stopped=None, attempt=1
) -> Outcome:
    task_id = task_id or new_id()[0]
    now = stopped or datetime.now(UTC)
    message = TaskMessage(
        id=task_id, name=f"name-{task_id[:6]}", func="tests.tasks.add", args=(1, 2),
        kwargs={"k": "v"}, group=group, save=save, attempt_count=attempt,
        enqueued=now - timedelta(seconds=1), cluster="default",
    )  # fmt: skip
    return Outcome(
        message=message, success=success, result_blob=dumps(value), started=now, stopped=now
    )


def test_outcomes_round_trip_with_aware_microsecond_timestamps(store):
    stopped = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    o = outcome({"answer": 42}, stopped=stopped, group="g")
    store.save_outcomes([o])
    task = store.get(o.message.id)
    assert task.result == {"answer": 42}
    assert task.args == (1, 2)
    assert task.kwargs == {"k": "v"}
    assert task.stopped == stopped
    assert task.started == stopped - timedelta(seconds=1)
    assert task.time_taken() == 1.0
    assert task.attempt_count == 1
    assert task.cluster == "default"
    assert store.get(o.message.name).id == o.message.id


def test_large_results_fit(store):
    o = outcome(b"x" * 3_000_000)
    store.save_outcomes([o])
    assert len(store.get(o.message.id).result) == 3_000_000


def test_a_stored_success_is_never_overwritten(store):
    first = outcome("first")
    store.save_outcomes([first])
    again = outcome("second", task_id=first.message.id, attempt=2)
    store.save_outcomes([again])
    failed = outcome("error", success=False, task_id=first.message.id, attempt=3)
    store.save_outcomes([failed])
    task = store.get(first.message.id)
    assert (task.result, task.success, task.attempt_count) == ("first", True, 1)
    with store.engine.connect() as conn:
        count = conn.scalar(sa.select(sa.func.count()).where(TaskRow.id == first.message.id))
    assert count == 1


def test_a_stored_failure_is_updated_by_a_later_attempt(store):
    failed = outcome("error", success=False)
    store.save_outcomes([failed])
    store.save_outcomes([outcome("fixed", task_id=failed.message.id, attempt=2)])
    task = store.get(failed.message.id)
    assert (task.result, task.success, task.attempt_count) == ("fixed", True, 2)


def test_one_batch_with_new_and_known_ids(store):
    known = outcome("old", success=False)
    store.save_outcomes([known])
    batch = [outcome(i, group="batch") for i in range(50)]
    batch.append(outcome("new", task_id=known.message.id))
    store.save_outcomes(batch)
    assert store.group_count("batch") == 50
    assert store.get(known.message.id).result == "new"


def test_a_batch_keeps_a_stored_success_and_updates_a_stored_failure(store):
    kept, retried = outcome("kept"), outcome("error", success=False)
    store.save_outcomes([kept, retried])
    store.save_outcomes([
        outcome("late failure", success=False, task_id=kept.message.id, attempt=2),
        outcome("fixed", task_id=retried.message.id, attempt=2),
        outcome("fresh"),
    ])  # fmt: skip
    assert (store.get(kept.message.id).result, store.get(kept.message.id).success) == (
        "kept", True,
    )  # fmt: skip
    assert store.get(retried.message.id).result == "fixed"
    assert store.count() == 3


def test_a_function_with_a_long_name_is_stored_under_a_name_cut_to_its_column(store):
    done = outcome("ok")
    done.message.func = functools.partial(print, "x" * 1000)  # its name is its long repr
    done.message.hook = functools.partial(print, "y" * 1000)
    store.save_outcomes([done])  # PostgreSQL would refuse the row, for ever
    task = store.get(done.message.id)
    assert task.result == "ok"
    assert len(task.func) == len(task.hook) == 256
    assert "partial(<built-in function print>" in task.func


def test_save_limit_prunes_the_oldest_successes(store):
    limited = ResultStore(store.config.replace(save_limit=5))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    limited.save_outcomes([outcome(i, stopped=base + timedelta(seconds=i)) for i in range(8)])
    limited.save_outcomes([outcome("f", success=False) for _ in range(3)])
    kept = sorted(t.result for t in limited.list_tasks(success=True))
    assert kept == [3, 4, 5, 6, 7]
    assert len(limited.list_tasks(success=False)) == 3


def test_prune_counts_what_went_and_breaks_ties_by_id(store):
    # SQLite prunes in one statement, the others in three: the same rows must go.
    same_time = datetime(2026, 1, 1, tzinfo=UTC)
    done = [outcome(i, stopped=same_time) for i in range(6)]
    store.save_outcomes(done)
    store.save_outcomes([outcome("f", success=False)])
    assert store.prune(10) == 0
    assert store.prune(4) == 2
    newest = sorted(o.message.id for o in done)[2:]
    assert sorted(t.id for t in store.list_tasks(success=True)) == newest
    assert len(store.list_tasks(success=False)) == 1


def test_finish_wakes_waiters_before_it_prunes_beyond_save_limit(store):
    from qengine.outcomes import finish

    limited = ResultStore(store.config.replace(save_limit=2))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    limited.save_outcomes([outcome(i, stopped=base + timedelta(seconds=i)) for i in range(3)])
    assert limited.count() == 2
    newest = outcome("new")
    at_notify: list[int] = []

    def notify(task_ids, rows):
        # Woken right after the commit, not after a second transaction that prunes.
        at_notify.append(limited.count())
        assert limited.get(task_ids[0]).result == "new"
        return set(task_ids)

    finish([newest], limited.config, store=limited, notify=notify, report=lambda *a: None)
    assert at_notify == [3]  # the pruning had not run yet
    assert limited.count() == 2  # and then it did
    assert limited.get(newest.message.id).result == "new"


def test_group_queries(store):
    store.save_outcomes([outcome(i, group="grp") for i in range(3)])
    store.save_outcomes([outcome("bad", success=False, group="grp")])
    assert store.group_results("grp") == [0, 1, 2]
    assert len(store.group_results("grp", failures=True)) == 4
    assert store.group_count("grp") == 4
    assert store.group_count("grp", failures=True) == 1
    assert [t.result for t in store.group_tasks("grp", failures=False)] == [0, 1, 2]
    assert store.delete_group("grp") == 4
    assert store.group_count("grp") == 0
    assert store.count() == 4


def test_unreachable_store_raises_a_store_error_without_the_password():
    store = ResultStore(Config(store="postgresql://u:s3cret@127.0.0.1:1/x"))
    with pytest.raises(StoreError) as info:
        store.get("abc")
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_tables_are_created_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    tables = set(sa.inspect(get_engine(url)).get_table_names())
    assert {"q_task", "q_schedule", "q_queue", "q_cache", "q_stat", "q_meta"} <= tables


def _sqlite_rows(url: str) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT * FROM q_task ORDER BY id").fetchall()


def test_the_sqlite_fast_path_stores_and_reads_what_sqlalchemy_does(tmp_path):
    """Our own SQLite files save and look up on the driver (``qengine.lite``); the rows it
    writes and the tasks it reads must be those of the SQLAlchemy path."""
    stopped = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    made = {}
    for fast in (True, False):
        url = f"sqlite:///{tmp_path}/{fast}.sqlite3"
        store = ResultStore(Config(store=url, save_limit=0))
        assert store.lite_file is not None
        if not fast:
            store.lite_file = None
        outcomes = [
            outcome({"n": 1}, task_id="a" * 32, stopped=stopped, group="g"),
            outcome(ValueError("x"), success=False, task_id="b" * 32, stopped=stopped),
        ]
        store.save_outcomes(outcomes)
        store.save_outcomes([outcome(2, task_id="b" * 32, stopped=stopped, attempt=2)])
        store.save_outcomes([outcome(3, task_id="a" * 32, stopped=stopped)])  # kept: 1
        tasks = [store.get("a" * 32), store.get("b" * 32), store.get("name-bbbbbb")]
        made[fast] = (_sqlite_rows(url), [repr(t) for t in tasks], [t.result for t in tasks])
    assert made[True] == made[False]
    assert made[True][2] == [{"n": 1}, 2, 2]


def test_the_sqlite_fast_path_fails_as_a_store_error_and_recovers(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = ResultStore(Config(store=url, save_limit=0))
    store.save_outcomes([outcome(1)])
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        conn.execute("ALTER TABLE q_task RENAME TO q_task_away")
    with pytest.raises(StoreError, match=r"store\.sqlite3 failed to save results: no such table"):
        store.save_outcomes([outcome(2)])
    with pytest.raises(StoreError, match=r"failed to read tasks: no such table"):
        store.get("abc")
    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        conn.execute("ALTER TABLE q_task_away RENAME TO q_task")
    o = outcome(3)
    store.save_outcomes([o])  # the failed write left no transaction open on its connection
    assert store.get(o.message.id).result == 3
    assert store.count() == 2


def test_a_cluster_store_on_sqlite_is_checkpointed_by_a_thread_not_by_its_commits(tmp_path):
    import os
    import time

    from qengine import lite

    path = tmp_path / "store.sqlite3"
    store = ResultStore(Config(store=f"sqlite:///{path}", save_limit=0))
    store.save_outcomes([outcome(0)])
    checkpointer = store.start_upkeep()
    assert checkpointer is not None
    assert checkpointer.thread.is_alive()
    try:
        with store.lite_file.connection() as conn:
            pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == lite.FALLBACK_CHECKPOINT_PAGES  # commits no longer checkpoint at 1,000
        pooled = store.engine.raw_connection()  # SQLAlchemy's connections leave it too
        try:
            pages = pooled.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        finally:
            pooled.close()
        assert pages == lite.FALLBACK_CHECKPOINT_PAGES
        before = os.path.getsize(path)
        for start in range(0, 400, 50):
            store.save_outcomes([outcome(b"x" * 4000) for _ in range(start, start + 50)])
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < before + 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) >= before + 1_000_000  # the thread copied the log in
    finally:
        checkpointer.stop()
    assert not checkpointer.thread.is_alive()
    assert store.count() == 401


def test_only_our_own_sqlite_files_get_a_checkpointer(tmp_path, postgres_url):
    assert ResultStore(Config(store="sqlite://")).start_upkeep() is None
    assert ResultStore(Config(store=postgres_url)).start_upkeep() is None
