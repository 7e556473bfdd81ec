"""Engine set-up: one engine per process, durable commits, safe concurrent writers."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timezone
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

# A pooled PostgreSQL connection idle this long is pinged before use (a server restart leaves it dead).
PING_AFTER = 2.0


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    if engine.dialect.driver == "psycopg":
        _binary_arrays(engine)
    return engine


def _binary_arrays(engine: Engine) -> None:
    """Lists (the arrays of one-statement bulk writes: an IAN's instances and locations, readiness's
    input rows) go to PostgreSQL in binary: psycopg's text array dumper runs in Python, ~0.6 µs an
    element (0.7 ms of a 100-instance IAN's eleven arrays), its binary one ~0.1 µs."""
    from psycopg.types.array import ListBinaryDumper

    @event.listens_for(engine, "connect")
    def _register(dbapi_conn, _record):
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)  # the last registered serves %s


def _ping_when_idle(engine: Engine) -> None:
    """Check a connection before use only if it sat in the pool for PING_AFTER seconds or more.

    SQLAlchemy's pool_pre_ping pings at every checkout: a round trip more for every transaction, ~10% of
    an IAN's and a claim's time on PostgreSQL. A connection in steady use cannot have gone stale
    unnoticed for long; one that idled is checked, and a dead one is replaced before the request sees
    it (DisconnectionError makes the pool connect afresh)."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the connection is unusable
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


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
    commit and never block writers). On PostgreSQL its transaction is READ ONLY and ends with COMMIT:
    psycopg follows every ROLLBACK with DEALLOCATE ALL, a round trip that also drops the connection's
    prepared statements, so the next statements are parsed and planned afresh."""
    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            yield conn.execution_options(**{READ_ONLY: True})
            return
        conn = conn.execution_options(**{READ_ONLY: True}, postgresql_readonly=True)
        yield conn
        if conn.in_transaction():
            conn.commit()


@contextmanager
def autocommitting(engine: Engine) -> Iterator[Connection]:
    """On PostgreSQL a connection on which every statement is its own transaction: one round trip
    each instead of BEGIN, statement, COMMIT (three). For short reads and one-statement writes that
    need no snapshot shared between statements (READ COMMITTED gives each statement its own anyway).
    Not for streamed results (server-side cursors need a transaction). On SQLite: `reading`."""
    if engine.dialect.name != "postgresql":
        with reading(engine) as conn:
            yield conn
        return
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def aware(at):
    """A datetime read back from the database, in UTC: SQLite returns them without a zone (None stays None)."""
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
