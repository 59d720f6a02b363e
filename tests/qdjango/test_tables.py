"""The Django models and the engine's SQLAlchemy tables describe the same columns.

Both sides create their tables for real — Django's migrations in the test
database, SQLAlchemy's ``create_all`` in a scratch database of the same
kind — and the reflected columns (name, type, length, nullability, primary
key) must agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from django.apps import apps
from django.db import connection

from qengine.db import Base, get_engine

pytestmark = pytest.mark.django_db


def _models_by_table() -> dict[str, type]:
    return {
        model._meta.db_table: model
        for model in apps.get_app_config("qdjango").get_models()
        if not model._meta.proxy
    }


def _describe(engine: sa.Engine, schema: str | None = None) -> dict[str, dict[str, Any]]:
    inspector = sa.inspect(engine)
    tables = {}
    for table in Base.metadata.tables:
        columns = {}
        pk = set(inspector.get_pk_constraint(table, schema=schema)["constrained_columns"])
        for column in inspector.get_columns(table, schema=schema):
            kind = column["type"]
            columns[column["name"]] = {
                "type": kind._type_affinity.__name__,  # VARCHAR and String compare equal
                "length": getattr(kind, "length", None),
                "timezone": getattr(kind, "timezone", None),
                "nullable": bool(column["nullable"]) and column["name"] not in pk,
                "pk": column["name"] in pk,
            }
        tables[table] = columns
    return tables


@pytest.fixture
def engine_side(tmp_path) -> Iterator[tuple[sa.Engine, str | None]]:
    """The engine's own tables, created by SQLAlchemy in a scratch database of the same kind."""
    if connection.vendor == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path}/engine.sqlite3")
        Base.metadata.create_all(engine)
        yield engine, None
        engine.dispose()
        return
    schema = f"engine_{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    url = sa.URL.create(
        "postgresql+psycopg", username=db["USER"], host=db["HOST"], port=int(db["PORT"]),
        database=db["NAME"],
    )  # fmt: skip
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    scoped = engine.execution_options(schema_translate_map={None: schema})
    Base.metadata.create_all(scoped)
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


def test_every_engine_table_has_a_model() -> None:
    assert set(_models_by_table()) == set(Base.metadata.tables)


def test_migrated_tables_equal_the_engine_tables(engine_side) -> None:
    engine, schema = engine_side
    migrated = _describe(get_engine("django://default"))  # Django's own connection
    created = _describe(engine, schema)
    for table in Base.metadata.tables:
        assert migrated[table] == created[table], table


def test_models_have_no_unmigrated_changes() -> None:
    from django.core.management import call_command

    call_command("makemigrations", "qdjango", "--check", "--dry-run", verbosity=0)
