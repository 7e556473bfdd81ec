"""On PostgreSQL an IAN's instances and locations are stored by one statement of arrays
(ian/upserts.py `ArrayUpserts`); on SQLite row by row (`RowUpserts`), as both were before. The oracle
here is the earlier code's: an upsert a row. For any sequence of IANs (an instance or a Retrieve AE
Title listed twice in one, IANs received out of order or at the same moment, optional attributes left
out by a later one) both leave the rows the oracle leaves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from workflow.ian.rules.availability import Availability
from workflow.ian.rules.notification import Notification, ReferencedInstance
from workflow.ian.tables import Notification as NotificationRow
from workflow.ian.upserts import (INSTANCE, LOCATION, LOCATION_COLUMNS, ArrayUpserts, RowUpserts, instance_conflict,
                                  location_conflict)
from workflow.store import migrate
from workflow.store.engine import aware, make_engine
from testkit.db import drop_database, new_database_url

BASE = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
NOTES = NotificationRow.__table__


@pytest.fixture(scope="module")
def postgres(postgres_admin_url, tmp_path_factory):
    url = new_database_url("postgresql", tmp_path_factory.mktemp("db"), postgres_admin_url)
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    drop_database(url, postgres_admin_url)


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    engine = make_engine(new_database_url("sqlite", tmp_path_factory.mktemp("db"), None))
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA synchronous=OFF"))  # not about durability
    engine.dispose()
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


class RowByRow:
    """The oracle: one upsert a row (an executemany), the merge rules the product's."""

    def __init__(self, insert) -> None:
        self._instances = instance_conflict(insert(INSTANCE))
        self._locations = location_conflict(insert(LOCATION))

    def store(self, conn, ian, at, notification_id) -> None:
        by_uid = {ref.sop_instance_uid: ref for ref in ian.instances}  # the last item for an instance wins
        for uid, ref in by_uid.items():
            conn.execute(self._instances, [dict(
                sop_instance_uid=uid, sop_class_uid=ref.sop_class_uid, series_instance_uid=ref.series_instance_uid,
                study_instance_uid=ian.study_instance_uid, first_notified_at=at, last_notified_at=at,
                last_notification_id=notification_id)])
            number = conn.execute(select(INSTANCE.c.id).where(INSTANCE.c.sop_instance_uid == uid)).scalar_one()
            for title in ref.retrieve_ae_titles:  # a title listed twice: upserted twice
                conn.execute(self._locations, [dict(zip(LOCATION_COLUMNS, (
                    title, ref.availability.value, ref.retrieve_url, ref.retrieve_uri,
                    ref.retrieve_location_uid, ref.file_set_id, ref.file_set_uid)),
                    instance_id=number, notified_at=at, notification_id=notification_id)])


optional = st.none() | st.sampled_from(["x", "y"])
references = st.builds(
    ReferencedInstance,
    sop_class_uid=st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"]),
    sop_instance_uid=st.sampled_from(["1.2.3.1", "1.2.3.2", "1.2.3.3"]),
    series_instance_uid=st.sampled_from(["1.2.9.1", "1.2.9.2"]),
    availability=st.sampled_from(list(Availability)),
    retrieve_ae_titles=st.lists(st.sampled_from(["PACS", "VNA"]), max_size=3).map(tuple),
    retrieve_url=optional.map(lambda v: v and f"http://pacs/{v}"), retrieve_uri=optional,
    retrieve_location_uid=optional.map(lambda v: v and "1.2.8.1"), file_set_id=optional, file_set_uid=st.none(),
)
ians = st.tuples(st.builds(Notification, study_instance_uid=st.sampled_from(["1.2.7.1", "1.2.7.2"]),
                           instances=st.lists(references, min_size=1, max_size=5).map(tuple)),
                 st.integers(0, 3))  # minutes after BASE it was received: out of order, or at once


def _stored(engine, upserts, sequence, *, with_note: bool = False) -> tuple[list, list]:
    """The instance and location rows `upserts` leave for `sequence`, notification ids as the index of
    the IAN in the sequence (databases number them apart). `with_note`: the notification row goes in
    the same call (`store_new`: on PostgreSQL the same statement), as ingest does."""
    with engine.begin() as conn:
        for table in ("instance_location", "instance_performed_step", "instance", "notification"):
            conn.execute(text(f"DELETE FROM {table}"))
    order = {}
    for n, (ian, minutes) in enumerate(sequence):
        at = BASE + timedelta(minutes=minutes)
        note = dict(sop_instance_uid=f"1.2.5.{n}", study_instance_uid=ian.study_instance_uid, calling_ae_title="T",
                    peer_address="127.0.0.1", received_at=at, instance_count=len(ian.instances),
                    referenced_pps_uid=None, content_sha256="0" * 64, dataset_json="{}")
        with engine.begin() as conn:
            if with_note:
                notification_id = upserts.store_new(conn, note, ian, at)
            else:
                notification_id = conn.execute(NOTES.insert().returning(NOTES.c.id), note).scalar_one()
                upserts.store(conn, ian, at, notification_id)
        order[notification_id] = n
    # Instances are numbered apart too: a location is compared by its instance's UID.
    with engine.connect() as conn:
        instances = conn.execute(select(INSTANCE).order_by(INSTANCE.c.sop_instance_uid)).mappings().all()
        locations = conn.execute(select(INSTANCE.c.sop_instance_uid, LOCATION).join(
            LOCATION, LOCATION.c.instance_id == INSTANCE.c.id).order_by(
            INSTANCE.c.sop_instance_uid, LOCATION.c.retrieve_ae_title)).mappings().all()
    return [_plain(row, order) for row in instances], [_plain(row, order) for row in locations]


def _plain(row, order: dict[int, int]) -> dict:
    plain = {name: aware(value) if isinstance(value, datetime) else value for name, value in row.items()
             if name not in ("id", "instance_id")}
    for name in ("last_notification_id", "notification_id"):
        if name in plain:
            plain[name] = order[plain[name]]
    return plain


@pytest.mark.postgres
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(ians, min_size=1, max_size=5))
def test_set_wise_upserts_leave_the_rows_row_by_row_upserts_leave(postgres, lite, sequence):
    oracle = _stored(postgres, RowByRow(postgresql.insert), sequence)
    assert oracle[0]  # every IAN names an instance
    assert _stored(postgres, ArrayUpserts(), sequence) == oracle
    assert _stored(postgres, ArrayUpserts(), sequence, with_note=True) == oracle
    assert _stored(lite, RowByRow(sqlite.insert), sequence) == oracle  # the oracle's rules mean one thing
    assert _stored(lite, RowUpserts(lite.dialect), sequence, with_note=True) == oracle


@pytest.mark.parametrize("backend", ["lite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_title_listed_twice_and_an_instance_listed_twice_in_one_ian(backend, request):
    engine = request.getfixturevalue(backend)
    first = ReferencedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.9.1", Availability.OFFLINE, ("PACS",))
    again = ReferencedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.9.1", Availability.ONLINE,
                               ("PACS", "PACS"), retrieve_url="http://pacs/1")
    upserts = ArrayUpserts() if backend == "postgres" else RowUpserts(engine.dialect)
    instances, locations = _stored(engine, upserts, [(Notification("1.2.7.1", (first, again)), 0)])
    assert [i["sop_instance_uid"] for i in instances] == ["1.2.3.1"]
    assert [(loc["retrieve_ae_title"], loc["availability"], loc["retrieve_url"]) for loc in locations] == [
        ("PACS", "ONLINE", "http://pacs/1")]


@pytest.mark.postgres
def test_an_ian_whose_uid_is_stored_already_writes_nothing_in_the_one_statement(postgres):
    """store_new: the notification's ON CONFLICT DO NOTHING returns no row, so no instance or location
    row is written either (ingest then tells a retry from a conflict by the digest)."""
    ref = ReferencedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.9.1", Availability.ONLINE, ("PACS",))
    first = (Notification("1.2.7.1", (ref,)), 0)
    assert _stored(postgres, ArrayUpserts(), [first], with_note=True)[0]
    again = ReferencedInstance("1.2.840.10008.5.1.4.1.1.4", "1.2.3.2", "1.2.9.2", Availability.OFFLINE, ("VNA",))
    note = dict(sop_instance_uid="1.2.5.0", study_instance_uid="1.2.7.9", calling_ae_title="T",
                peer_address="127.0.0.1", received_at=BASE, instance_count=1, referenced_pps_uid=None,
                content_sha256="1" * 64, dataset_json="{}")
    with postgres.begin() as conn:
        before = conn.execute(select(func.count()).select_from(LOCATION)).scalar_one()
        assert ArrayUpserts().store_new(conn, note, Notification("1.2.7.9", (again,)), BASE) is None
        assert conn.execute(select(func.count()).select_from(LOCATION)).scalar_one() == before
        assert conn.execute(select(func.count()).select_from(INSTANCE)).scalar_one() == 1
