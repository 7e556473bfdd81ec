"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import warnings

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.schema import CreateIndex

from workflow import schema
from workflow.store import migrate
from workflow.store.engine import make_engine


def test_models_and_migrations_are_in_step(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as conn, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)
        skipped = _expression_indexes_skipped(caught)
        # What Alembic cannot reflect (SQLite's indexes on expressions) is compared as DDL text.
        for index in skipped:
            built = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                                 {"n": index.name}).scalar()
            modelled = str(CreateIndex(index).compile(dialect=engine.dialect))
            assert _words(built) == _words(modelled), f"index {index.name}: built {built!r}, modelled {modelled!r}"
        # Alembic compares neither: an index's operator classes on PostgreSQL, a column's collation.
        opclasses = _operator_classes(conn) if engine.dialect.name == "postgresql" else {}
        collations = _collations(conn) if engine.dialect.name == "postgresql" else {}
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"
    if engine.dialect.name == "postgresql":
        assert not skipped, "PostgreSQL reflects indexes on expressions: Alembic should have compared them"
        modelled = {i.name: sorted(i.dialect_options["postgresql"]["ops"].values())
                    for t in schema.metadata.tables.values() for i in t.indexes
                    if i.dialect_options["postgresql"]["ops"]}
        assert modelled and {n: opclasses.get(n) for n in modelled} == modelled
        named = {(t.name, c.name): c.type.dialect_impl(engine.dialect).collation for t in schema.metadata.tables.values()
                 for c in t.columns if getattr(c.type.dialect_impl(engine.dialect), "collation", None)}
        assert len(named) > 40 and named == collations, set(named.items()) ^ set(collations.items())


def _collations(conn) -> dict[tuple[str, str], str]:
    """The columns whose collation is not the database's default."""
    rows = conn.execute(text("SELECT table_name, column_name, collation_name FROM information_schema.columns "
                             "WHERE table_schema = current_schema() AND collation_name IS NOT NULL"))
    return {(table, column): collation for table, column, collation in rows if table != "alembic_version"}


def _operator_classes(conn) -> dict[str, list[str]]:
    """Each index's operator classes other than its columns' defaults."""
    rows = conn.execute(text(
        "SELECT c.relname, o.opcname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "CROSS JOIN LATERAL unnest(i.indclass) AS k(opclass) JOIN pg_opclass o ON o.oid = k.opclass "
        "WHERE NOT o.opcdefault"))
    found: dict[str, list[str]] = {}
    for name, opclass in rows:
        found.setdefault(name, []).append(opclass)
    return {n: sorted(v) for n, v in found.items()}


def _expression_indexes_skipped(caught) -> list:
    names = {m.group(1) for w in caught
             if (m := re.search(r"skipping metadata-specified expression-based index '(\w+)'", str(w.message)))}
    indexes = [i for t in schema.metadata.tables.values() for i in t.indexes if i.name in names]
    assert len(indexes) == len(names), f"skipped indexes the models do not have: {names}"
    return indexes


def _words(sql: str | None) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", sql or "")
