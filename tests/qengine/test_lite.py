"""The store's own SQLite files without SQLAlchemy (``qengine.lite``): the same SQL, values
and rows as SQLAlchemy's path, and no SQLAlchemy loaded where only these statements run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from qengine import Config, lite
from qengine.db import Base, TaskRow
from qengine.store import ResultStore
from qengine.store_sql import upsert_statement
from tests.processes import ROOT

from .test_store import outcome


def test_the_upsert_is_the_sql_sqlalchemy_compiles():
    compiled = upsert_statement("sqlite").compile(dialect=sqlite_dialect.dialect())
    assert compiled.string == lite.UPSERT_SQL
    assert tuple(compiled.positiontup) == lite.TASK_COLUMNS


def test_tables_and_columns_are_the_declared_ones():
    assert set(lite.TABLES) == set(Base.metadata.tables)
    assert tuple(c.name for c in TaskRow.__table__.c) == lite.TASK_COLUMNS


@pytest.mark.parametrize(
    "url",
    ["sqlite:///rel.db", "sqlite:////abs/dir/x.sqlite3", "sqlite:///a%20b.db",
     "sqlite+pysqlite:///r.db", "sqlite:///sub/dir/q.db"],
)  # fmt: skip
def test_own_files_are_read_as_sqlalchemy_reads_their_urls(url):
    assert lite.own_file(url) == make_url(url).database


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=ro&uri=true", "sqlite:///x.db?timeout=5",
     "postgresql://localhost/test", "django://default"],
)  # fmt: skip
def test_memory_uri_and_other_urls_are_left_to_sqlalchemy(url):
    assert lite.own_file(url) is None
    assert lite.lite_file(url) is None


def _both(tmp_path):
    """A store on the driver and one through SQLAlchemy, each on a file of its own."""
    fast = ResultStore(Config(store=f"sqlite:///{tmp_path}/fast.sqlite3", save_limit=0))
    slow = ResultStore(Config(store=f"sqlite:///{tmp_path}/slow.sqlite3", save_limit=0))
    assert fast.lite_file is not None
    slow.lite_file = None
    return fast, slow


def test_prune_keeps_the_same_rows_as_sqlalchemys_prune(tmp_path):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = [
        # ties on ``stopped`` are broken by id, newest (highest) kept
        outcome(i, task_id=f"{i:032d}", stopped=base + timedelta(seconds=i // 3))
        for i in range(40)
    ] + [outcome(ValueError("x"), success=False, task_id=f"f{i:031d}", stopped=base)
         for i in range(3)]  # fmt: skip
    kept = []
    for store in _both(tmp_path):
        store.save_outcomes(outcomes)
        pruned = store.prune(10)
        assert pruned == 30
        kept.append(sorted(t.id for t in store.list_tasks(limit=100)))
    assert kept[0] == kept[1]
    assert len(kept[0]) == 13  # 10 newest successes and every failure


def test_the_prune_walks_the_stopped_index(tmp_path):
    store, _ = _both(tmp_path)
    store.save_outcomes([outcome(1)])
    with store.lite_file.connection() as conn:
        found = conn.execute(f"EXPLAIN QUERY PLAN {lite.PRUNE_SQL}", (5,))
        plan = " ".join(row[-1] for row in found)
    assert "ix_q_task_stopped" in plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan  # at most for the id tie-break's part


def test_a_look_up_by_name_finds_the_newest_as_sqlalchemy_does(tmp_path):
    base = datetime(2026, 1, 1, tzinfo=UTC)
    found = []
    for store in _both(tmp_path):
        for i in range(3):
            o = outcome(i, task_id=f"{i:032d}", stopped=base + timedelta(seconds=i))
            o.message.name = "same-name"
            store.save_outcomes([o])
        found.append([repr(store.get(key)) for key in ("same-name", f"{0:032d}", "nothing")])
    assert found[0] == found[1]
    assert found[0][2] == "None"


def test_the_next_due_schedule_is_read_as_the_schedules_module_reads_it(tmp_path):
    from qengine.schedules import schedule, seconds_until_due

    url = f"sqlite:///{tmp_path}/s.sqlite3"
    config = Config(store=url)
    import qengine

    qengine.configure(store=url)
    file = lite.lite_file(url)
    assert file.next_due("default") is None
    when = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    schedule("math.floor", 1.5, next_run=when)
    schedule("math.floor", 2.5, next_run=when - timedelta(days=1), cluster="other")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert file.next_due("default") == when
    assert (file.next_due("default") - now).total_seconds() == seconds_until_due(
        ResultStore(config).engine, now, "default"
    )
    assert file.next_due("other") == when - timedelta(days=1)


def test_failures_are_store_errors_naming_the_file(tmp_path):
    from qengine.errors import StoreError

    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"not a database" * 100)
    store = ResultStore(Config(store=f"sqlite:///{path}"))
    failed = r"broken\.sqlite3 failed to read tasks: file is not a database"
    with pytest.raises(StoreError, match=failed):
        store.get("x")


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter: this one has SQLAlchemy loaded already."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_a_process_on_these_statements_alone_never_loads_sqlalchemy(tmp_path):
    """Fresh file (tables made by a child), save, prune, look up, checkpoint, next due."""
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    script = textwrap.dedent(f"""
        import sys
        from qengine import Config
        from qengine.store import ResultStore
        from qengine.cluster.cluster import Cluster
        from qengine.health import check_servers
        from datetime import UTC, datetime
        from qengine.store import dumps
        from qengine.task import Outcome, TaskMessage, new_id

        def outcome(value):
            now = datetime.now(UTC)
            message = TaskMessage(
                id=new_id()[0], name="n", func="math.floor", args=(1,), kwargs={{}}, group=None,
                save=None, attempt_count=1, enqueued=now, cluster="default",
            )
            return Outcome(message=message, success=True, result_blob=dumps(value), started=now,
                           stopped=now)

        store = ResultStore(Config(store={url!r}, save_limit=2))
        store.ping()
        upkeep = store.start_upkeep()
        store.save_outcomes([outcome(i) for i in range(5)])
        o = outcome(7)
        store.save_outcomes([o])
        assert store.get(o.message.id).result == 7
        assert store.lite_file.next_due("default") is None
        upkeep.stop()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy")
        assert not loaded, loaded
        print("ok")
    """)
    done = _python(script)
    assert done.stdout.strip() == "ok", done.stderr
    with sqlite3.connect(tmp_path / "fresh.sqlite3") as conn:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        tables = {name for (name,) in names}
        successes = conn.execute("SELECT count(*) FROM q_task WHERE success").fetchone()[0]
    assert set(lite.TABLES) <= tables
    assert successes == 2


def test_tables_the_child_cannot_make_fail_as_a_store_error(tmp_path):
    path = tmp_path / "odd.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE other (x)")  # an index name q_task's DDL needs is taken
        conn.execute("CREATE INDEX ix_q_task_name ON other (x)")
    script = textwrap.dedent(f"""
        import sys
        from qengine import Config
        from qengine.errors import StoreError
        from qengine.store import ResultStore
        try:
            ResultStore(Config(store="sqlite:///{path}")).get("x")
        except StoreError as exc:
            print(exc)
        assert "sqlalchemy" not in sys.modules
    """)
    done = _python(script)
    assert "odd.sqlite3 failed to create its tables: " in done.stdout, done.stderr
    assert "ix_q_task_name already exists" in done.stdout


def _long_log(tmp_path, name: str) -> lite.LiteFile:
    """A file whose write-ahead log holds more than ``TRUNCATE_FROM_PAGES`` pages."""
    file = lite.LiteFile(f"sqlite:///{tmp_path}/{name}", str(tmp_path / name))
    with file.connection() as conn:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # nothing shortens the log meanwhile
        conn.execute("CREATE TABLE t (v BLOB)")
        for _ in range(lite.TRUNCATE_FROM_PAGES // 8 + 50):
            conn.execute("INSERT INTO t VALUES (?)", (b"x" * 8 * 4096,))
        conn.execute("PRAGMA wal_autocheckpoint=1000")
    assert (tmp_path / f"{name}-wal").stat().st_size > lite.TRUNCATE_FROM_PAGES * 4096
    return file


def test_a_long_write_ahead_log_is_emptied_by_the_checkpointer(tmp_path):
    file = _long_log(tmp_path, "long.sqlite3")
    try:
        lite.Checkpointer(file).checkpoint()
        assert (tmp_path / "long.sqlite3-wal").stat().st_size == 0
        with file.connection() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] > 0
            assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == lite.WAL_LIMIT_BYTES
    finally:
        file.close_idle()


def test_a_reader_in_the_way_never_stalls_the_checkpointer(tmp_path):
    file = _long_log(tmp_path, "held.sqlite3")
    reader = sqlite3.connect(tmp_path / "held.sqlite3", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds a snapshot in the log
        with file.connection() as conn:
            conn.execute("INSERT INTO t VALUES (x'00')")  # a frame the reader cannot see
        began = time.monotonic()
        lite.Checkpointer(file).checkpoint()
        assert time.monotonic() - began < 2  # not busy_timeout's 30 s
        assert (tmp_path / "held.sqlite3-wal").stat().st_size > 0
        reader.execute("COMMIT")
        lite.Checkpointer(file).checkpoint()  # the next round, with the reader gone
        assert (tmp_path / "held.sqlite3-wal").stat().st_size == 0
    finally:
        reader.close()
        file.close_idle()


def test_sqlalchemy_connections_to_an_own_file_cap_the_log_too(tmp_path):
    from qengine.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path}/sa.sqlite3")
    try:
        with engine.connect() as conn:
            limit = conn.exec_driver_sql("PRAGMA journal_size_limit").scalar()
        assert limit == lite.WAL_LIMIT_BYTES
    finally:
        engine.dispose()
