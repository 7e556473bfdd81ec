"""Engine set-up: one engine per process, durable commits, safe concurrent writers."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timezone
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str) -> Engine:
    # Each association has its own thread; a pooled connection is never shared between threads.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=10, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy issue BEGIN itself (below) instead of pysqlite's implicit transactions.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer Success (NORMAL may lose the last commits on
        # power loss, which would break "nothing acknowledged is lost").
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A writer takes the write lock up front (IMMEDIATE): two writers that read first and then
        # write would otherwise deadlock, and SQLite answers that with "database is locked" at once.
        # A reader (see `reading`) must not: it would block every writer while it streams.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


READ_ONLY = "wfm_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite it takes no write lock (WAL readers see the last
    commit and never block writers)."""
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True})


def aware(at):
    """A datetime read back from the database, in UTC: SQLite returns them without a zone (None stays None)."""
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
