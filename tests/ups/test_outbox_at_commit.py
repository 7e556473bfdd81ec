"""Outbox events are inserted at COMMIT, under the commit-order lock taken there: two transactions
that each write an event and lock a workitem row the other holds no longer deadlock on PostgreSQL; a
rolled-back transaction writes no event; ids follow commit order."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, select, text

from workflow.store.at_commit import owed
from workflow.ups.outbox import COMMIT_ORDER_LOCK, enqueue
from workflow.ups.tables import OutboxEvent, Workitem

O, W = OutboxEvent.__table__, Workitem.__table__
NOW = datetime(2026, 12, 5, tzinfo=timezone.utc)


def _event(conn, workitem_uid: str, subscriber: str = "SUB") -> int:
    return enqueue(conn, [subscriber], workitem_uid, 1, {"00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}, NOW)


def _events(engine, workitem_uid: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(O.c.id).where(O.c.workitem_uid == workitem_uid).order_by(O.c.id)).scalars())


def _insert_workitem(engine, uid: str) -> None:
    with engine.begin() as conn:
        conn.execute(W.insert().values(sop_instance_uid=uid, procedure_step_state="SCHEDULED",
                                       input_readiness_state="READY", dataset_json="{}", created_at=NOW,
                                       updated_at=NOW))


def _wait_until_blocked_on_a_lock(engine, pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"),
                                      {"p": pid}).scalar()
            watcher.rollback()
            if waiting == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


def test_a_rolled_back_transaction_writes_no_event(engine):
    uid = "1.2.826.0.1.3680043.8.498.901"
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            assert _event(conn, uid) == 1 and owed(conn) == 1
            raise RuntimeError("the change fails after its event was written")
    with engine.connect() as conn:  # the next transactions on the pool's connections commit nothing stale
        _event(conn, uid)
        conn.rollback()
        conn.execute(select(1))
        conn.commit()
    for _ in range(3):
        with engine.begin() as conn:
            conn.execute(select(1))
    assert _events(engine, uid) == []
    with engine.begin() as conn:
        _event(conn, uid)
    assert len(_events(engine, uid)) == 1


def test_writing_an_event_then_waiting_for_a_claimed_workitem_does_not_deadlock(engine):
    """The readiness pattern: T1 writes a State Report for workitem A, then waits for workitem B's row,
    which a claim (T2) holds; T2 then writes its own event and commits. With the commit-order lock
    taken at the insert, T2 waited for T1's lock and T1 for T2's row: "deadlock detected"."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE: no row locks to wait for")
    a, b = "1.2.826.0.1.3680043.8.498.911", "1.2.826.0.1.3680043.8.498.912"
    _insert_workitem(engine, a)
    _insert_workitem(engine, b)
    claim_holds_b, claim_may_go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def claim() -> None:  # T2: lock B (as `_load(lock=True)`), change it, write its event, commit
        try:
            with engine.begin() as conn:
                conn.execute(select(W.c.sop_instance_uid).where(W.c.sop_instance_uid == b).with_for_update())
                claim_holds_b.set()
                claim_may_go.wait(10)
                conn.execute(W.update().where(W.c.sop_instance_uid == b).values(procedure_step_state="IN PROGRESS"))
                _event(conn, b)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def readiness() -> None:  # T1: event for A first, then B's row
        try:
            with engine.begin() as conn:
                _event(conn, a)
                pids.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
                t1_ready.set()
                conn.execute(select(W.c.sop_instance_uid).where(W.c.sop_instance_uid == b).with_for_update())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pids: list[int] = []
    t1_ready = threading.Event()
    t2 = threading.Thread(target=claim)
    t2.start()
    assert claim_holds_b.wait(10)
    t1 = threading.Thread(target=readiness)
    t1.start()
    assert t1_ready.wait(10)
    _wait_until_blocked_on_a_lock(engine, pids[0])  # T1 holds its event and waits for B
    claim_may_go.set()
    t2.join(30)
    t1.join(30)
    assert not t1.is_alive() and not t2.is_alive()
    assert errors == []
    # Commit order: the claim committed first, so its event has the lower id though written later.
    (b_id,), (a_id,) = _events(engine, b), _events(engine, a)
    assert b_id < a_id



def test_one_event_takes_the_commit_order_lock_before_its_id_in_one_statement(engine):
    """The usual commit (one event) sends lock, insert and NOTIFY as one statement: it still waits for
    the commit-order lock before its row gets an id, so ids follow commit order."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE: no commit-order lock")
    first, second = "1.2.826.0.1.3680043.8.498.921", "1.2.826.0.1.3680043.8.498.922"
    statements: list[str] = []
    pids: list[int] = []
    started = threading.Event()

    def later_writer() -> None:
        with engine.begin() as conn:
            pids.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
            _event(conn, second)
            started.set()

    def count(conn, cursor, statement, *args):
        if threading.current_thread() is writer:
            statements.append(statement)

    writer = threading.Thread(target=later_writer)
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as holder:  # holds the commit-order lock, as a committing transaction does
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": COMMIT_ORDER_LOCK})
            writer.start()
            deadline = time.monotonic() + 10
            while not pids and time.monotonic() < deadline:
                time.sleep(0.01)
            _wait_until_blocked_on_a_lock(engine, pids[0])  # its commit waits for the lock
            holder.execute(O.insert().values(receiving_ae="SUB", workitem_uid=first, event_type_id=1,
                                             event_json="{}", status="PENDING", attempts=0, created_at=NOW,
                                             next_attempt_at=NOW))
        # The holder committed: the writer's statement gets the lock, then its row its id.
        writer.join(30)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert started.is_set()
    (first_id,), (second_id,) = _events(engine, first), _events(engine, second)
    assert first_id < second_id
    at_commit = [s for s in statements if "outbox_event" in s]
    assert len(at_commit) == 1 and "pg_advisory_xact_lock" in at_commit[0] and "pg_notify" in at_commit[0]
