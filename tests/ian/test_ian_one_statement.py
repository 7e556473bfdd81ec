"""On PostgreSQL an IAN with nothing else to write (no performed step to link, no audit record) is one
statement outside a transaction block, its study's readiness mark in it (ian/upserts.py
`ArrayUpserts.store_alone`). It must leave exactly the rows, the mark included, that the IAN's
transaction leaves (the mark then written by `mark`), and nothing at all for a retry or a conflict."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from workflow.ian.ingest import IngestResult, IngestService, Received
from workflow.ian.rules.notification import parse_ian
from workflow.ian.tables import Instance, InstanceLocation, Notification
from workflow.readiness.service import ReadinessService
from workflow.readiness.site_policies import load_site_policies
from workflow.readiness.tables import ReadinessPending
from workflow.store import migrate
from workflow.store.engine import aware, make_engine
from testkit.db import drop_database, new_database_url

pytestmark = pytest.mark.postgres

BASE = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


class MarkInItsTransaction:
    """The readiness service, its mark refused to the one statement: the IAN's transaction it is."""

    def __init__(self, readiness: ReadinessService) -> None:
        self.readiness = readiness

    def mark(self, conn, study_uid, at, ian=False):
        self.readiness.mark(conn, study_uid, at, ian)

    def ian_mark_from(self, gate):
        return None

    def committed(self):
        self.readiness.committed()


@pytest.fixture
def engines(postgres_admin_url, tmp_path):
    urls = [new_database_url("postgresql", tmp_path / name, postgres_admin_url) for name in ("one", "txn")]
    made = [make_engine(url) for url in urls]
    for engine in made:
        migrate.upgrade(engine)
    yield made
    for engine, url in zip(made, urls):
        engine.dispose()
        drop_database(url, postgres_admin_url)


def ian(study: str, *uids: str, availability: str = "ONLINE") -> dict:
    return {"0020000D": {"vr": "UI", "Value": [study]}, "00081111": {"vr": "SQ", "Value": []},
            "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": [f"{study}.1"]},
                                                "00081199": {"vr": "SQ", "Value": [
                {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                 "00081155": {"vr": "UI", "Value": [uid]}, "00080056": {"vr": "CS", "Value": [availability]},
                 "00080054": {"vr": "AE", "Value": ["PACS"]}} for uid in uids]}}]}}


# (IAN UID, minutes after BASE it was received, data set, what ingest says): received out of order, a
# retry and a conflict among them.
SEQUENCE = [
    ("1.2.5.1", 5, ian("1.2.7.1", "1.2.3.1", "1.2.3.2"), IngestResult.STORED),
    ("1.2.5.2", 2, ian("1.2.7.1", "1.2.3.2", "1.2.3.3", availability="NEARLINE"), IngestResult.STORED),
    ("1.2.5.3", 9, ian("1.2.7.2", "1.2.3.9"), IngestResult.STORED),
    ("1.2.5.1", 5, ian("1.2.7.1", "1.2.3.1", "1.2.3.2"), IngestResult.ALREADY_STORED),
    ("1.2.5.2", 7, ian("1.2.7.2", "1.2.3.8"), IngestResult.CONFLICT),
]


def _rows(engine) -> dict:
    with engine.connect() as conn:
        def plain(table, *order):
            # Ids left out: two databases number their rows apart.
            return [{k: aware(v) if isinstance(v, datetime) else v for k, v in row.items()
                     if k not in ("id", "instance_id", "last_notification_id")}
                    for row in conn.execute(select(table).order_by(*order)).mappings()]
        locations = conn.execute(select(Instance.sop_instance_uid, InstanceLocation.availability)
                                 .join(InstanceLocation, InstanceLocation.instance_id == Instance.id)
                                 .order_by(Instance.sop_instance_uid)).all()
        return {"notification": plain(Notification.__table__, "sop_instance_uid"),
                "instance": plain(Instance.__table__, "sop_instance_uid"), "location": locations,
                "pending": plain(ReadinessPending.__table__, "study_instance_uid")}


def test_one_statement_leaves_what_the_transaction_leaves_and_is_one_statement(engines):
    one_engine, txn_engine = engines
    one = IngestService(one_engine, studies=ReadinessService(one_engine, load_site_policies("")))
    txn = IngestService(txn_engine, studies=MarkInItsTransaction(ReadinessService(txn_engine, load_site_policies(""))))
    executed: list[str] = []
    event.listen(one_engine, "before_cursor_execute", lambda *args: executed.append(args[2]))
    for uid, minutes, dataset, expected in SEQUENCE:
        received = Received(uid, "ARCHIVE", "127.0.0.1:1", BASE + timedelta(minutes=minutes), dataset)
        executed.clear()
        assert one.ingest(received, parse_ian(dataset, 1000)) is expected
        if expected is IngestResult.STORED:
            assert len(executed) == 1 and executed[0].lstrip().startswith("WITH note AS"), executed
        assert txn.ingest(received, parse_ian(dataset, 1000)) is expected
    stored = _rows(one_engine)
    assert stored == _rows(txn_engine)
    # The mark as an IAN's: generation counted, the earliest IAN of the study kept, no full read.
    assert [(p["study_instance_uid"], p["generation"], p["ians_since"], p["full_read"]) for p in stored["pending"]] == [
        ("1.2.7.1", 2, BASE + timedelta(minutes=2), False), ("1.2.7.2", 1, BASE + timedelta(minutes=9), False)]
