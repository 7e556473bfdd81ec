"""On PostgreSQL an IAN's instances and locations are stored by one statement of arrays
(ian/upserts.py `ArrayUpserts`); row by row they were (and on SQLite are) an upsert each. For any
sequence of IANs (an instance or a Retrieve AE Title listed twice in one, IANs received out of order
or at the same moment, optional attributes left out by a later one) both leave the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from workflow.ian.rules.availability import Availability
from workflow.ian.rules.notification import Notification, ReferencedInstance
from workflow.ian.tables import Notification as NotificationRow
from workflow.ian.upserts import INSTANCE, LOCATION, ArrayUpserts, RowUpserts
from workflow.store import migrate
from workflow.store.engine import make_engine
from testkit.db import drop_database, new_database_url

pytestmark = pytest.mark.postgres

BASE = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
NOTES = NotificationRow.__table__


@pytest.fixture(scope="module")
def engine(postgres_admin_url, tmp_path_factory):
    url = new_database_url("postgresql", tmp_path_factory.mktemp("db"), postgres_admin_url)
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    drop_database(url, postgres_admin_url)


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


def _stored(engine, upserts, sequence) -> tuple[list, list]:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE instance_location, instance_performed_step, instance, notification "
                          "RESTART IDENTITY CASCADE"))
    for n, (ian, minutes) in enumerate(sequence):
        at = BASE + timedelta(minutes=minutes)
        with engine.begin() as conn:
            notification_id = conn.execute(NOTES.insert().returning(NOTES.c.id), dict(
                sop_instance_uid=f"1.2.5.{n}", study_instance_uid=ian.study_instance_uid, calling_ae_title="T",
                peer_address="127.0.0.1", received_at=at, instance_count=len(ian.instances),
                content_sha256="0" * 64, dataset_json="{}")).scalar_one()
            upserts.store(conn, ian, at, notification_id)
    with engine.connect() as conn:
        return (conn.execute(select(INSTANCE).order_by(INSTANCE.c.sop_instance_uid)).all(),
                conn.execute(select(LOCATION).order_by(LOCATION.c.sop_instance_uid,
                                                       LOCATION.c.retrieve_ae_title)).all())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(ians, min_size=1, max_size=5))
def test_arrays_leave_the_rows_the_row_by_row_upserts_leave(engine, sequence):
    row_by_row = _stored(engine, RowUpserts(postgresql.insert), sequence)
    arrays = _stored(engine, ArrayUpserts(), sequence)
    assert arrays == row_by_row
    assert arrays[0]  # every IAN names an instance


def test_a_title_listed_twice_and_an_instance_listed_twice_in_one_ian(engine):
    first = ReferencedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.9.1", Availability.OFFLINE, ("PACS",))
    again = ReferencedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.9.1", Availability.ONLINE,
                               ("PACS", "PACS"), retrieve_url="http://pacs/1")
    instances, locations = _stored(engine, ArrayUpserts(), [(Notification("1.2.7.1", (first, again)), 0)])
    assert [i.sop_instance_uid for i in instances] == ["1.2.3.1"]
    assert [(loc.retrieve_ae_title, loc.availability, loc.retrieve_url) for loc in locations] == [
        ("PACS", "ONLINE", "http://pacs/1")]
