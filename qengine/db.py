"""SQLAlchemy tables of the engine and the engines that reach them.

``q_task`` holds results, ``q_schedule`` schedules, ``q_queue`` the SQL
broker's packages, ``q_cache`` cached results when the cache is the store,
``q_stat`` cluster heartbeats when the broker is not Redis, and ``q_meta``
the generated secret of the embedded default. qdjango declares the same
tables; a test keeps the two descriptions in step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from . import lite
from .config import mask_url
from .errors import ConfigError, StoreError
from .task import NAME_LENGTH, PATH_LENGTH

log = logging.getLogger(__name__)

__all__ = [
    "Base",
    "CacheRow",
    "MetaRow",
    "QueueRow",
    "ScheduleRow",
    "StatRow",
    "TaskRow",
    "get_engine",
    "normalize_url",
    "store_error",
    "writing",
]


class _SQLiteDateTime(sqlite.DATETIME):
    """SQLite's text datetimes, also when the connection already parsed them.

    A Django SQLite connection converts columns declared ``datetime`` itself
    (``detect_types``); the engine's SQL runs on such connections under qdjango.
    """

    def result_processor(self, dialect: Any, coltype: object) -> Any:
        parse = super().result_processor(dialect, coltype)

        def process(value: Any) -> Any:
            return value if value is None or isinstance(value, datetime) else parse(value)

        return process


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database, with microseconds on MySQL/MariaDB too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteDateTime())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given where an aware one is needed")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class Base:
    """Where the engine's tables are declared (``Base.metadata``), named as an ORM base would be.

    The tables are SQLAlchemy Core tables, not ORM classes: the engine runs
    only Core statements, and importing ``sqlalchemy.orm`` cost every process
    that uses the store 5.6 MB.
    """

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Rows:
    """A table whose columns read as attributes (``TaskRow.id``), as a mapped class's do.

    Statements take it where they take the table (``insert(TaskRow)``);
    ``__table__`` is the table itself.
    """

    def __init__(self, doc: str, name: str, *columns: Any) -> None:
        self.__doc__ = doc
        self.__table__ = Table(name, Base.metadata, *columns)
        for column in self.__table__.columns:
            setattr(self, column.key, column)

    def __clause_element__(self) -> Table:
        return self.__table__

    def __getattr__(self, name: str) -> Column[Any]:  # the columns, for type checkers
        raise AttributeError(f"table {self.__table__.name} has no column {name!r}")


TaskRow = Rows(
    "One executed task: its call, its result, and when and how often it ran.",
    "q_task",
    Column("id", String(32), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, index=True),
    Column("func", String(PATH_LENGTH), nullable=False, index=True),
    Column("hook", String(PATH_LENGTH)),
    Column("args", Blob),
    Column("kwargs", Blob),
    Column("result", Blob),
    Column("group", String(NAME_LENGTH), index=True),
    Column("started", UTCDateTime, nullable=False),
    Column("stopped", UTCDateTime, nullable=False, index=True),
    Column("success", Boolean, nullable=False, index=True),
    Column("attempt_count", Integer, nullable=False, default=0),
    Column("cluster", String(100)),
)

ScheduleRow = Rows(
    "A schedule; ``args`` and ``kwargs`` are Python literals so the admin can edit them.",
    "q_schedule",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), unique=True),
    Column("func", String(PATH_LENGTH), nullable=False),
    Column("hook", String(PATH_LENGTH)),
    Column("args", Text),
    Column("kwargs", Text),
    Column("schedule_type", String(1), nullable=False, default="O"),
    Column("minutes", Integer),
    Column("cron", String(100)),
    Column("repeats", Integer, nullable=False, default=-1),
    Column("next_run", UTCDateTime, index=True),
    Column("cluster", String(100)),
    Column("task", String(100)),
    Column("q_options", Blob),
)

QueueRow = Rows(
    "A package waiting in the SQL broker; ``lock`` is the end of its current lease.",
    "q_queue",
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("key", String(100), nullable=False),
    Column("payload", Blob, nullable=False),
    Column("lock", UTCDateTime),
    Column("deliveries", Integer, nullable=False, default=0),
    Index("ix_q_queue_key_lock", "key", "lock"),
)

CacheRow = Rows(
    "A cached value when the cache is the store; ``expires`` None keeps it.",
    "q_cache",
    Column("key", String(255), primary_key=True),
    Column("value", Blob, nullable=False),
    Column("expires", UTCDateTime, index=True),
)

StatRow = Rows(
    "A cluster's latest status as JSON; ``expires`` makes dead clusters disappear.",
    "q_stat",
    Column("cluster_id", String(64), primary_key=True),
    Column("data", LongText, nullable=False),
    Column("expires", UTCDateTime, nullable=False, index=True),
)

MetaRow = Rows(
    "Small facts about the installation, such as the embedded default's secret.",
    "q_meta",
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)


# -- engines --------------------------------------------------------------------

_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
            "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}  # fmt: skip


@lru_cache(maxsize=64)
def normalize_url(url: str) -> str:
    """Pick the drivers we install when a URL names none (``postgresql://`` → psycopg 3).

    Cached: every store and broker call looks its engine up by URL.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError and ValueError here
        raise ConfigError(f"{mask_url(url)!r} is not a valid database URL: {exc}") from exc
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


_engines: dict[str, Engine] = {}
_created: set[str] = set()
_create_tables = True


def set_create_tables(enabled: bool) -> None:
    """Whether engines create the engine's tables on first use.

    qdjango turns this off: its migrations own the tables there, and a
    table created behind their back would make ``migrate`` fail.
    """
    global _create_tables
    _create_tables = enabled


_engines_lock = threading.Lock()


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    memory = parsed.database in {None, "", ":memory:"}
    if not memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, so that the broker can ask for
        # BEGIN IMMEDIATE (take the write lock up front) instead of pysqlite's deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA journal_size_limit={lite.WAL_LIMIT_BYTES}")
        cursor.execute("PRAGMA busy_timeout=30000")
        if not memory and lite.is_checkpointed(parsed.database):  # type: ignore[arg-type]
            cursor.execute(f"PRAGMA wal_autocheckpoint={lite.FALLBACK_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: through exec_driver_sql, BEGIN cost as much as the
        # statement the transaction is for.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.connection.driver_connection.execute(f"BEGIN {mode}")

    return engine


_factories: dict[str, Callable[[str], Engine]] = {}


def register_engine_factory(scheme: str, factory: Callable[[str], Engine]) -> None:
    """Let a framework supply the engines of URLs with its own scheme.

    qdjango registers ``django://<alias>``: its engines borrow Django's
    connections, so the store's SQL runs in Django's transactions. Such
    an engine is the factory's to cache and to set up; its tables are
    never created here.
    """
    _factories[scheme] = factory


def get_engine(url: str) -> Engine:
    """The process's engine for ``url``, with the engine's tables created on first use."""
    factory = _factories.get(url.partition("://")[0])
    if factory is not None:
        return factory(url)
    url = normalize_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = _sqlite_engine(url)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600)
            _engines[url] = engine
        if _create_tables and url not in _created:
            # Under the lock so threads of one process create the tables once; on SQLite
            # with the write lock taken first, so other processes wait instead of failing.
            with writing(engine) as conn:
                Base.metadata.create_all(conn, checkfirst=True)
            _created.add(url)
    return engine


def store_error(url: str, action: str, exc: SQLAlchemyError) -> StoreError:
    """Our error for a statement that failed on the store at ``url``, in one line.

    It names the server (password masked) and, when the database could not be
    reached, what to check. The driver's message stands for the failure:
    SQLAlchemy's own adds the statement, its parameters (pickled results) and
    a link, and runs over several lines.
    """
    reason = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc.args[0] if exc.args else exc)
    unreachable = isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError)
    return lite.store_failure(url, action, reason, unreachable)


def writing(engine: Engine) -> Any:
    """``engine.begin()`` for a transaction that will write.

    On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a deferred
    transaction that reads first cannot upgrade once another connection has
    written, and fails at once instead of waiting for the lock.
    """
    return _immediate(engine).begin()


@lru_cache(maxsize=32)
def _immediate(engine: Engine) -> Engine:
    # An option engine is cheap to use but not to make: one per engine, not per write.
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def dispose_engines() -> None:
    """Close every pooled connection (new configuration, or a fresh child process)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _created.clear()
        _immediate.cache_clear()


def close_idle_connections() -> None:
    """Close the pooled connections nobody holds, keeping the engines.

    Called before the cluster forks its helpers: a child must not inherit a
    database handle (a SQLite handle or a server session belongs to one
    process), and the engines' next check-outs simply connect again.
    """
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
