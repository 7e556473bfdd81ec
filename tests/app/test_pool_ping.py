"""PostgreSQL connections are pinged before use only after idling (store/engine.py): a connection that
died while idle in the pool (a database restart, an administrator's pg_terminate_backend) is replaced
before a request uses it, without a ping round trip on every transaction."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine

from workflow.store import engine as store_engine

pytestmark = pytest.mark.postgres


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def _terminate(admin_url: str, pid: int) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar()
    admin.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(postgres_admin_url, monkeypatch):
    monkeypatch.setattr(store_engine, "PING_AFTER", 0.05)
    engine = store_engine.make_engine(postgres_admin_url)
    try:
        dead = _backend_pid(engine)
        _terminate(postgres_admin_url, dead)
        time.sleep(0.1)  # longer than PING_AFTER: the connection counts as idle
        assert _backend_pid(engine) != dead  # no error: the pool connected afresh
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(postgres_admin_url, monkeypatch):
    monkeypatch.setattr(store_engine, "PING_AFTER", 3600)
    engine = store_engine.make_engine(postgres_admin_url)
    pings = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or True)
    try:
        for _ in range(20):
            _backend_pid(engine)
        assert pings == []
    finally:
        engine.dispose()
