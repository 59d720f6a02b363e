"""The engine's SQL on Django's own connections: qdjango's only door to its tables.

The engine speaks SQLAlchemy Core. Under Django its statements must run
where the project's other queries run — on ``django.db.connections``, in
the current thread's connection, inside the current ``atomic`` block — so
that test rollbacks, in-memory test databases, routers, ``OPTIONS`` and the
project's own driver all apply. This module builds, per database alias, an
SQLAlchemy engine that owns no connection: each checkout borrows the
thread's Django connection, and each SQLAlchemy transaction is a Django
``atomic`` block (a savepoint when one is already open). The engine finds
it by the store URL ``django://<alias>`` (``qengine.db.register_engine_factory``).
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from qengine.errors import ConfigError, StoreError

__all__ = [
    "SCHEME",
    "SUPPORTED_VENDORS",
    "alias_of",
    "close_stale",
    "close_thread_connections",
    "django_engine",
    "url_for",
    "vendor_problem",
]

SCHEME = "django"
"""URL scheme of a Django database in the engine's configuration: ``django://<alias>``."""

SUPPORTED_VENDORS = ("mysql", "postgresql", "sqlite")
"""``connection.vendor`` values the engine's SQL is tested on (their GIS backends included)."""

_TABLES = ("q_task", "q_schedule", "q_queue")
"""Tables whose absence means ``migrate`` has not run on the alias."""


def url_for(alias: str) -> str:
    """The engine's URL for a Django database alias."""
    if alias not in connections.settings:
        raise ConfigError(
            f"no Django database named {alias!r}; DATABASES has {sorted(connections.settings)}"
        )
    return f"{SCHEME}://{alias}"


def alias_of(url: str) -> str | None:
    """The alias a ``django://`` URL names, or None for any other URL."""
    prefix = f"{SCHEME}://"
    if not url.startswith(prefix):
        return None
    return url[len(prefix) :].strip("/") or DEFAULT_DB_ALIAS


def vendor_problem(wrapper: Any) -> str | None:
    """Why qdjango's tables cannot live on this Django connection, or None when they can.

    Judged by ``connection.vendor``, not the ENGINE path, so PostGIS,
    SpatiaLite and MySQL's GIS backend are what they are underneath.
    """
    if wrapper.vendor in SUPPORTED_VENDORS:
        return None
    return (
        f"Django database {wrapper.alias!r} is a {wrapper.vendor!r} database; qdjango's "
        f"tables work on {', '.join(SUPPORTED_VENDORS)} (their GIS backends included)"
    )


def _driver(wrapper: Any) -> str:
    """The SQLAlchemy dialect for the driver the project's backend really uses."""
    problem = vendor_problem(wrapper)
    if problem:
        raise ConfigError(problem)
    vendor = wrapper.vendor
    module = wrapper.Database.__name__
    if vendor == "sqlite":
        return "sqlite+pysqlite"
    if vendor == "postgresql":
        return "postgresql+psycopg2" if module.startswith("psycopg2") else "postgresql+psycopg"
    if vendor == "mysql":
        family = "mariadb" if getattr(wrapper, "mysql_is_mariadb", False) else "mysql"
        # PyMySQL's install_as_MySQLdb shim answers to MySQLdb but is PyMySQL underneath.
        driver = "pymysql" if "pymysql" in module.lower() else "mysqldb"
        return f"{family}+{driver}"
    raise AssertionError(f"unreachable: {vendor!r} is in SUPPORTED_VENDORS without a dialect")


class _Borrowed:
    """Django's DB-API connection as SQLAlchemy sees it: Django keeps every decision.

    Commits and rollbacks are Django's (the ``atomic`` blocks below), closing
    is Django's (``close_old_connections``, ``CONN_MAX_AGE``), and the
    per-connection set-up SQLAlchemy's dialects do on connect (SQLite
    functions, psycopg notice handlers) would change, or pile up on, a
    connection that is not theirs.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._raw.cursor(*args, **kwargs)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_notice_handler(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _ignore(*_args: Any, **_kwargs: Any) -> None:
    return None


_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_checked: set[str] = set()


def django_engine(url: str) -> Engine:
    """The engine of a ``django://<alias>`` URL: one per alias, borrowing Django's connections."""
    alias = alias_of(url)
    if alias is None:
        raise ConfigError(f"{url!r} is not a Django database URL ({SCHEME}://<alias>)")
    with _lock:
        engine = _engines.get(alias)
        if engine is None:
            engine = _engines[alias] = _build(alias)
    if alias not in _checked:
        try:
            _check_tables(alias)
        except DatabaseError as exc:
            raise unreachable(alias, exc) from exc
        _checked.add(alias)
    return engine


def unreachable(alias: str, exc: DatabaseError) -> StoreError:
    """Our error for a Django database that failed to connect: alias, server, what to check.

    Django raises its own errors here, which SQLAlchemy does not recognise as the
    driver's; the engine's callers expect ours. Never names the password.
    """
    settings = connections[alias].settings_dict
    host = settings.get("HOST") or "localhost"
    server = f"{host}:{settings['PORT']}" if settings.get("PORT") else host
    where = f"{connections[alias].vendor} at {server}, database {settings.get('NAME')!r}"
    reason = " ".join(str(exc).split())
    return StoreError(
        f"Django database {alias!r} ({where}) cannot be reached: {reason}; check that the "
        f"database server is running there and that DATABASES[{alias!r}] names it"
    )


def _build(alias: str) -> Engine:
    url_for(alias)  # an unknown alias is a ConfigError naming DATABASES' aliases
    wrapper = connections[alias]

    def borrow() -> _Borrowed:
        # ``connections[alias]`` is this thread's connection: each cluster thread gets its own.
        django_conn = connections[alias]
        try:
            django_conn.ensure_connection()
        except DatabaseError as exc:
            raise unreachable(alias, exc) from exc
        return _Borrowed(django_conn.connection)

    driver = _driver(wrapper)
    options: dict[str, Any] = {}
    if driver.startswith("postgresql"):
        # Registering hstore/uuid adapters would change Django's connection (and needs the
        # driver's own connection class, not the borrowed one); the engine's tables use neither.
        options["use_native_hstore"] = False
        if driver.endswith("psycopg2"):
            options["use_native_uuid"] = False
    engine = create_engine(
        f"{driver}://",
        creator=borrow,
        poolclass=NullPool,  # nothing pooled here: Django's connection is the only one
        module=wrapper.Database,  # the project's driver, so its errors are recognised
        **options,
    )
    # Django owns the session: the engine's per-connection isolation requests (autocommit
    # for one-statement writes, READ COMMITTED for leases) would change it under Django's feet.
    engine.dialect.set_isolation_level = _ignore  # type: ignore[method-assign]
    engine.dialect.reset_isolation_level = _ignore  # type: ignore[method-assign]

    # Each SQLAlchemy transaction is a Django atomic block on the same alias: a commit is
    # Django's commit (or the release of a savepoint inside the caller's transaction), and a
    # rollback undoes only what the engine did.
    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        block = transaction.atomic(using=alias)
        django_conn = connections[alias]
        if (
            django_conn.vendor == "sqlite"
            and django_conn.get_autocommit()
            and conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
        ):
            # A transaction that will write takes SQLite's write lock up front, whatever the
            # project's transaction_mode: a deferred one that read first cannot upgrade while
            # another process writes, and fails at once with "database is locked".
            saved = django_conn.transaction_mode
            django_conn.transaction_mode = "IMMEDIATE"
            try:
                block.__enter__()
            finally:
                django_conn.transaction_mode = saved
        else:
            block.__enter__()
        conn.info.setdefault("qdjango_atomic", []).append(block)

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        conn.info["qdjango_atomic"].pop().__exit__(None, None, None)

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        blocks = conn.info.get("qdjango_atomic")
        if blocks:
            error = _RolledBack()
            blocks.pop().__exit__(_RolledBack, error, None)

    return engine


class _RolledBack(Exception):
    """Handed to ``atomic.__exit__`` so that Django rolls the block back."""


def _check_tables(alias: str) -> None:
    """Fail on first use, naming the alias, when ``migrate`` has not made the tables there."""
    with connections[alias].cursor() as cursor:
        present = set(connections[alias].introspection.table_names(cursor))
    missing = [name for name in _TABLES if name not in present]
    if missing:
        raise StoreError(
            f"Django database {alias!r} has no table {', '.join(missing)}: qdjango's tables are "
            f"made by migrations; run `manage.py migrate --database {alias}` (or check that "
            "your DATABASE_ROUTERS send qdjango's models to a database where they migrate)"
        )


def close_stale() -> None:
    """Django's ``close_old_connections`` for the engine's threads and workers.

    A connection inside an ``atomic`` block is left alone: it is someone's
    open transaction (a test's, or the caller's of an in-process cluster),
    and closing it there would only mark that transaction for rollback.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def close_thread_connections() -> None:
    """Close what this thread opened, when an engine thread ends (same care for transactions)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def dispose() -> None:
    """Forget the engines (a new configuration); Django's connections are Django's to close."""
    with _lock:
        _engines.clear()
        _checked.clear()
