"""Rows and statements written at COMMIT: a transaction collects them on its connection and they are
run just before its COMMIT, the rows under a commit-order lock (PostgreSQL) taken there.

Why: rows whose ids must follow commit order (outbox events, audit records) need a lock held from
their insert to the commit. Taken mid-transaction, that lock is held while the transaction goes on to
wait for row locks (a workitem another transaction claims) — and the other, holding the row, then
waits for the lock to write its own rows: PostgreSQL "deadlock detected". Taken at COMMIT it is the
last lock a transaction takes, and a transaction holding it waits for nothing else.

And a round trip: on PostgreSQL the last of these statements carries the COMMIT (one simple query),
so a claim that writes an event, or an IAN that marks its study, waits for one round trip fewer.

A rolled-back transaction runs none of them (they are dropped at ROLLBACK and at the next BEGIN).
SQLite needs no lock: BEGIN IMMEDIATE serialises every writer already."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from sqlalchemy import Connection, Engine, Executable, Table, bindparam, event, func, select, text
from sqlalchemy.engine.default import DefaultDialect

_KEY = "wfm_rows_at_commit"
_STATEMENTS = "wfm_statements_at_commit"
_NOTIFY = "wfm_notify_at_commit"
_WITH_COMMIT = "wfm_with_commit"  # execution option: this statement carries the COMMIT


def insert_at_commit(conn: Connection, table: Table, rows: Iterable[dict[str, Any]],
                     order_lock: int | None = None) -> None:
    """Insert `rows` into `table` when `conn`'s transaction commits, after taking the transaction-level
    advisory lock `order_lock` (PostgreSQL) so ids follow commit order."""
    rows = list(rows)
    if rows:
        conn.info.setdefault(_KEY, {}).setdefault((order_lock or 0, table.name), (table, []))[1].extend(rows)


def execute_at_commit(conn: Connection, statement: Executable, params: dict[str, Any]) -> None:
    """Run `statement` just before `conn`'s transaction commits (before the rows inserted at commit,
    so the commit-order lock stays the last lock taken). For a write nothing in the transaction
    reads back and whose result nobody needs: on PostgreSQL the last one carries the COMMIT."""
    conn.info.setdefault(_STATEMENTS, []).append((statement, params))


def notify_at_commit(conn: Connection, channel: str) -> None:
    """NOTIFY `channel` (PostgreSQL) as the transaction commits: listeners hear of it only if it does."""
    conn.info.setdefault(_NOTIFY, set()).add(channel)


def owed(conn: Connection) -> int:
    """How many rows the connection's transaction will insert at its COMMIT."""
    return sum(len(rows) for _, rows in conn.info.get(_KEY, {}).values())


@event.listens_for(Engine, "commit")
def _flush(conn: Connection) -> None:
    # Runs inside the transaction, just before the COMMIT is sent. Locks in one order (by key), so two
    # committing transactions with rows for several tables never wait for each other in a circle.
    pending, channels = conn.info.pop(_KEY, None), conn.info.pop(_NOTIFY, None)
    postgres = conn.dialect.name == "postgresql"
    notes = sorted(channels or ())
    statements: list[tuple[Any, Any]] = conn.info.pop(_STATEMENTS, None) or []
    for (lock, _), (table, rows) in sorted((pending or {}).items(), key=lambda kv: kv[0]):
        if postgres and lock and len(rows) == 1:  # the usual case (one event, one audit record)
            row = rows[0]
            statements.append((_gated_insert(table, tuple(row), lock, tuple(notes)),
                               {f"v_{name}": value for name, value in row.items()}))
            notes = []  # sent with it
            continue
        if postgres and lock:
            statements.append((text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock}))
        statements.append((table.insert(), rows))
    for channel in notes:
        statements.append((text("SELECT pg_notify(:c, '')"), {"c": channel}))
    for n, (statement, params) in enumerate(statements, 1):
        if n == len(statements) and conn.dialect.driver == "psycopg" and not isinstance(params, list):
            statement = statement.execution_options(**{_WITH_COMMIT: True})
        conn.execute(statement, params)


@event.listens_for(DefaultDialect, "do_execute")
def _send_with_commit(cursor, statement, parameters, context) -> bool:
    """The last statement written at commit and the COMMIT go to PostgreSQL as one simple query: one
    round trip instead of two. psycopg binds the values client-side (its quoting, not ours) and sends
    "<statement>; COMMIT"; if the statement fails, PostgreSQL skips the COMMIT and the error is raised
    here as any statement's. Once committed, SQLAlchemy's own COMMIT finds nothing to do (psycopg
    sends none outside a transaction)."""
    if not context.execution_options.get(_WITH_COMMIT):
        return False
    from psycopg import ClientCursor
    cursor.execute(ClientCursor(cursor.connection).mogrify(statement, parameters) + "; COMMIT")
    return True


@lru_cache(maxsize=64)
def _gated_insert(table: Table, names: tuple[str, ...], lock: int, channels: tuple[str, ...]):
    """One statement, one round trip, for lock, insert and NOTIFYs (three or more otherwise): the
    row is selected from a CTE that takes the lock, so the lock is held before the row (and its id)
    exists; the CTE calls volatile functions, so PostgreSQL evaluates it once and never inlines it.
    A NOTIFY is delivered at COMMIT wherever in the transaction it is made. Built once per shape, the
    values bound as `v_<column>`: building it cost more than running it (~0.3 ms a claim)."""
    gate = select(func.pg_advisory_xact_lock(lock), *(func.pg_notify(c, "") for c in channels)).cte("gate")
    values = select(*(bindparam(f"v_{name}", type_=table.c[name].type) for name in names)).select_from(gate)
    return table.insert().from_select(list(names), values)


@event.listens_for(Engine, "begin")
@event.listens_for(Engine, "rollback")
def _drop(conn: Connection) -> None:
    for key in (_KEY, _STATEMENTS, _NOTIFY):
        conn.info.pop(key, None)
