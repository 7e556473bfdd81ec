"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from workflow import schema
from workflow.store import migrate
from workflow.store.engine import make_engine


def test_models_and_migrations_are_in_step(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"
