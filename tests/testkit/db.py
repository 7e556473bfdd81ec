"""Test databases (a SQLite file, or a PostgreSQL database created and dropped per module) and the
settings a test server runs with."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow.config import Settings

POSTGRES_URL = os.environ.get("WFM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("WFM_REQUIRE_POSTGRES") == "1"


def postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL not reachable at {make_url(POSTGRES_URL).render_as_string()}: {exc.__class__.__name__}"


def new_database_url(backend: str, tmp_path: Path, admin_url: str | None, locale: str | None = None) -> str:
    """A new database; on PostgreSQL `locale` is its collation and character type (else the server's)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'wfm-{uuid.uuid4().hex[:8]}.db'}"
    name = f"wfm_test_{uuid.uuid4().hex[:12]}"
    options = f" TEMPLATE template0 LC_COLLATE '{locale}' LC_CTYPE '{locale}'" if locale else ""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{options}'))
    finally:
        admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: str | None) -> None:
    if not url.startswith("postgresql"):
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def test_settings(database_url: str, **overrides) -> Settings:
    values = dict(database_url=database_url, host="127.0.0.1", port=0, http_port=0, shutdown_grace=5.0,
                  network_timeout=10.0, readiness_delay=0.02)
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test


def query_plan(engine, statement) -> str:
    """The plan the database picks for `statement`, as one line. On PostgreSQL with sequential scans
    off: a test's tables are tiny, so this asks which index could serve, as on a large table."""
    compiled = statement.compile(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            params = tuple(compiled.params[name] for name in compiled.positiontup)
            return " ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        return " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
