"""Round trips PostgreSQL transactions save, and what stays as it was: the last statement written at
commit carries the COMMIT (store/at_commit.py), reads end with COMMIT so psycopg keeps the
connection's prepared statements (store/engine.py `reading`); an IAN is one round trip (three when
its study's mark cannot go in its statement); a change whose rows written at commit fail is rolled
back whole, on both backends."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone

import pytest
from sqlalchemy import bindparam, create_engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from workflow.store.at_commit import insert_at_commit
from workflow.store.engine import reading
from workflow.store.wakeups import EVENTS, notify_at_commit
from workflow.ups.outbox import COMMIT_ORDER_LOCK, enqueue
from workflow.ups.tables import OutboxEvent, Workitem

O, W = OutboxEvent.__table__, Workitem.__table__
NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


def _insert_workitem(engine, uid: str) -> None:
    with engine.begin() as conn:
        conn.execute(W.insert().values(sop_instance_uid=uid, procedure_step_state="SCHEDULED",
                                       input_readiness_state="READY", dataset_json="{}", created_at=NOW,
                                       updated_at=NOW))


def _state(engine, uid: str) -> str:
    with reading(engine) as conn:
        return conn.execute(select(W.c.procedure_step_state).where(W.c.sop_instance_uid == uid)).scalar_one()


def _postgres_only(engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no round trips to save: the database is in the process")


def test_a_change_whose_event_cannot_be_written_is_rolled_back_whole(engine):
    uid = "1.2.826.0.1.3680043.8.498.931"
    _insert_workitem(engine, uid)
    bad = dict(receiving_ae="SUB", workitem_uid=uid, event_type_id=1, event_json=None, status="PENDING",
               attempts=0, created_at=NOW, next_attempt_at=NOW)  # event_json is NOT NULL
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(W.update().where(W.c.sop_instance_uid == uid).values(procedure_step_state="IN PROGRESS"))
            insert_at_commit(conn, O, [bad], COMMIT_ORDER_LOCK)
            notify_at_commit(conn, EVENTS)
    assert _state(engine, uid) == "SCHEDULED"
    with engine.begin() as conn:  # the pool's connection is usable: the next change commits
        conn.execute(W.update().where(W.c.sop_instance_uid == uid).values(procedure_step_state="IN PROGRESS"))
        enqueue(conn, ["SUB"], uid, 1, {}, NOW)
    assert _state(engine, uid) == "IN PROGRESS"
    with reading(engine) as conn:
        assert conn.execute(select(O.c.event_json).where(O.c.workitem_uid == uid)).scalars().all() == ["{}"]


def test_the_event_written_at_commit_carries_the_commit(engine):
    """Lock, insert, NOTIFY and COMMIT reach PostgreSQL as one simple query: no COMMIT of its own."""
    _postgres_only(engine)
    uid = "1.2.826.0.1.3680043.8.498.932"
    _insert_workitem(engine, uid)
    with tempfile.TemporaryFile("w+") as trace:
        with engine.begin() as conn:
            pgconn = conn.connection.dbapi_connection.pgconn
            pgconn.trace(trace.fileno())
            conn.execute(W.update().where(W.c.sop_instance_uid == uid).values(procedure_step_state="IN PROGRESS"))
            enqueue(conn, ["SUB"], uid, 1, {"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}}, NOW)
        pgconn.untrace()
        trace.seek(0)
        sent = trace.read()  # libpq's trace: a message a line, but a query's own newlines kept
    start = sent.index('Query\t "WITH gate AS')
    end = sent.index('; COMMIT"', start)
    carried = sent[start:end]
    assert "pg_advisory_xact_lock" in carried and "pg_notify" in carried and "\tF\t" not in carried, carried
    assert 'Query\t "COMMIT"' not in sent
    assert _state(engine, uid) == "IN PROGRESS"
    with reading(engine) as conn:
        assert conn.execute(select(O.c.status).where(O.c.workitem_uid == uid)).scalars().all() == ["PENDING"]


def test_reads_keep_the_connections_prepared_statements(engine):
    """psycopg prepares a statement run often on a connection; a ROLLBACK would make it DEALLOCATE ALL."""
    _postgres_only(engine)
    one = create_engine(engine.url, pool_size=1, max_overflow=0)  # every read on the same connection
    lookup = select(W.c.procedure_step_state).where(W.c.sop_instance_uid == bindparam("uid"))
    try:
        for _ in range(3):
            with reading(one) as conn:
                for _ in range(4):
                    conn.execute(lookup, {"uid": "1.2.826.0.1.3680043.8.498.933"}).all()
        with reading(one) as conn:
            prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    finally:
        one.dispose()
    assert any("workitem.procedure_step_state" in s for s in prepared), prepared


def test_a_write_inside_a_read_is_refused(engine):
    """`reading` is for reads: on PostgreSQL its transaction is READ ONLY (it ends with COMMIT)."""
    _postgres_only(engine)
    uid = "1.2.826.0.1.3680043.8.498.934"
    _insert_workitem(engine, uid)
    with pytest.raises(DBAPIError, match="read-only transaction"):
        with reading(engine) as conn:
            conn.execute(W.update().where(W.c.sop_instance_uid == uid).values(procedure_step_state="IN PROGRESS"))
    assert _state(engine, uid) == "SCHEDULED"


def test_values_carried_with_the_commit_are_stored_verbatim(engine):
    """The carried statement's values are bound client-side: quotes, backslashes, percent signs and SQL
    in a value (a patient's name in an event) are stored as given, never run."""
    uid = "1.2.826.0.1.3680043.8.498.935"
    hostile = "O'Brien\\'); DROP TABLE workitem; -- %s %(x)s \u00e9\u4e2d $$ E'\\x00'"
    with engine.begin() as conn:
        enqueue(conn, ["SUB"], uid, 1, {"00100010": {"vr": "PN", "Value": [{"Alphabetic": hostile}]}}, NOW)
    with reading(engine) as conn:
        stored = conn.execute(select(O.c.event_json).where(O.c.workitem_uid == uid)).scalar_one()
        conn.execute(select(W.c.sop_instance_uid).limit(1)).all()  # raises if the table had been dropped
    assert json.loads(stored)["00100010"]["Value"][0]["Alphabetic"] == hostile


def _ian_round_trips(engine, studies, warm_uid: str, uid: str) -> list[str]:
    """The requests the IAN `uid` sends, each awaiting an answer, `studies` marking its study (another,
    `warm_uid`, first: the pool's connection made, the statements compiled and prepared)."""
    _postgres_only(engine)
    from workflow.ian.ingest import IngestService, Received
    from workflow.ian.rules.notification import parse_ian

    item = {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00081155": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.941"]},
            "00080056": {"vr": "CS", "Value": ["ONLINE"]}, "00080054": {"vr": "AE", "Value": ["PACS"]}}
    ian = {"0020000D": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.942"]},
           "00081111": {"vr": "SQ", "Value": []},
           "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.943"]},
                                               "00081199": {"vr": "SQ", "Value": [item]}}]}}
    service = IngestService(engine, studies=studies)
    service.ingest(Received(warm_uid, "MODALITY", "127.0.0.1:1", NOW, ian), parse_ian(ian, 10))
    received = Received(uid, "MODALITY", "127.0.0.1:1", NOW, ian)
    with engine.connect() as warm:
        pgconn = warm.connection.dbapi_connection.pgconn  # the pool hands this connection out next
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        assert service.ingest(received, parse_ian(ian, 10)).value == "stored"
        pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t") for line in trace.read().splitlines()]
    return [fields[3] for fields in sent if len(fields) > 3 and fields[1] == "F" and fields[3] in ("Query", "Sync")]


def test_an_ian_is_one_round_trip(engine):
    """The notification row, instances, locations and the readiness mark in one statement, outside a
    transaction block (ian/upserts.py `ArrayUpserts.store_alone`)."""
    from workflow.readiness.service import ReadinessService
    from workflow.readiness.site_policies import load_site_policies
    studies = ReadinessService(engine, load_site_policies(""))
    assert len(_ian_round_trips(engine, studies, "1.2.826.0.1.3680043.8.498.946", "1.2.826.0.1.3680043.8.498.947")) == 1


def test_an_ian_whose_mark_cannot_be_folded_is_three_round_trips(engine):
    """BEGIN; the notification row, instances and locations in one statement; the readiness mark with
    the COMMIT (ian/upserts.py `ArrayUpserts.store_new`, store/at_commit.py)."""
    from workflow.readiness.service import mark_pending

    class Marks:  # a mark that must go through `mark` (as `wfm reconcile run`'s, which also notifies)
        def mark(self, conn, study_uid, at, ian=False):
            mark_pending(conn, study_uid, at, ian)

        def ian_mark_from(self, gate):
            return None

        def committed(self):
            pass

    assert len(_ian_round_trips(engine, Marks(), "1.2.826.0.1.3680043.8.498.944", "1.2.826.0.1.3680043.8.498.945")) == 3


def _round_trips(engine, action) -> list[str]:
    """The requests `action` sends on the connection the pool hands out next, each awaiting an answer."""
    with engine.connect() as warm:
        pgconn = warm.connection.dbapi_connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        action()
        pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t") for line in trace.read().splitlines()]
    return [fields[3] for fields in sent if len(fields) > 3 and fields[1] == "F" and fields[3] in ("Query", "Sync")]


@pytest.mark.parametrize("subscribed", [False, True], ids=["no subscriber", "a global subscriber"])
def test_a_claim_is_four_round_trips(engine, subscribed):
    """BEGIN; the workitem locked and read with the subscriptions that may cover it; its UPDATE; COMMIT,
    which carries the State Report when a subscriber is owed one (ups/worklist.py `_load`)."""
    _postgres_only(engine)
    from pydicom.uid import generate_uid
    from testkit.ups import workitem

    from workflow.config import Settings
    from workflow.ups import subscriptions
    from workflow.ups.tables import OutboxEvent
    from workflow.ups.worklist import WorklistService

    service = WorklistService(engine, Settings(database_url=str(engine.url)))
    if subscribed:
        with engine.begin() as conn:
            subscriptions.subscribe_global(conn, "SUB", False, NOW)
    uids = [generate_uid() for _ in range(2)]
    for uid in uids:
        assert service.create(uid, workitem().to_json_dict()).status.code in (0, 0xB300)
    claim = {"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}, "00081195": {"vr": "UI", "Value": [generate_uid()]}}
    assert service.change_state(uids[0], claim).status.code == 0  # warm: statements compiled and prepared
    outcomes = []
    waits = _round_trips(engine, lambda: outcomes.append(service.change_state(uids[1], claim)))
    assert outcomes[0].status.code == 0
    assert len(waits) == 4, waits
    O = OutboxEvent.__table__
    with reading(engine) as conn:
        events = conn.execute(select(O.c.receiving_ae, O.c.event_json)
                              .where(O.c.workitem_uid == uids[1], O.c.event_type_id == 1).order_by(O.c.id)).all()
    states = [json.loads(event)["00741000"]["Value"][0] for _, event in events]
    assert states == (["SCHEDULED", "IN PROGRESS"] if subscribed else [])  # its creation's, then the claim's
    assert {ae for ae, _ in events} <= {"SUB"}
