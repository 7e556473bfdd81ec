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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change its key (0020): with foreign keys on, dropping the old
            # table would fail. Off for the migrations, as SQLite's procedure says (possible only
            # outside a transaction), and the keys checked before the connection is used again.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migrations left rows whose foreign keys break: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


run_migrations_online()
