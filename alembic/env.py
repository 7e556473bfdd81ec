"""Alembic environment. The engine comes from the caller (workflow.store.migrate) or from
`sqlalchemy.url` / WFM_DATABASE_URL when a developer runs the `alembic` command by hand."""

import os

from alembic import context

from workflow import schema
from workflow.store.engine import make_engine

config = context.config
target_metadata = schema.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = os.environ.get("WFM_DATABASE_URL") or config.get_main_option("sqlalchemy.url") or "sqlite:///wfm.db"
        engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
