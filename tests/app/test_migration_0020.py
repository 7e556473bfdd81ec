"""Migration 0020 numbers the instances a database holds in their order of arrival and keys their
locations by that number: every location stays with its instance, a later IAN numbers on, and the
migration reverses (both backends)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import text

from workflow.app import App
from workflow.ian.ingest import Received
from workflow.store import migrate
from workflow.store.engine import make_engine
from testkit.db import drop_database, new_database_url, test_settings

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)
# Inserted in this order, which is not the UIDs' order: the numbers must follow arrival.
ARRIVED = ["1.2.3.9", "1.2.3.1", "1.2.3.5"]
LOCATIONS = [("1.2.3.1", "PACS", "ONLINE"), ("1.2.3.1", "VNA", "NEARLINE"), ("1.2.3.5", "PACS", "OFFLINE"),
             ("1.2.3.9", "PACS", "ONLINE")]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    admin = request.getfixturevalue("postgres_admin_url") if request.param == "postgresql" else None
    url = new_database_url(request.param, tmp_path, admin)
    yield url
    drop_database(url, admin)


def _seed_at_0019(engine) -> None:
    migrate.upgrade(engine, "0019")
    with engine.begin() as conn:
        note = conn.execute(text(
            "INSERT INTO notification (sop_instance_uid, study_instance_uid, calling_ae_title, peer_address, "
            "received_at, instance_count, content_sha256, dataset_json) "
            "VALUES ('1.2.5.1', '1.2.7.1', 'ARCHIVE', 'test', :at, 3, :sha, '{}') RETURNING id"),
            {"at": AT, "sha": "0" * 64}).scalar_one()
        for uid in ARRIVED:
            conn.execute(text("INSERT INTO instance (sop_instance_uid, sop_class_uid, series_instance_uid, "
                              "study_instance_uid, first_notified_at, last_notified_at, last_notification_id) "
                              "VALUES (:uid, '1.2.840.10008.5.1.4.1.1.2', '1.2.9.1', '1.2.7.1', :at, :at, :note)"),
                         {"uid": uid, "at": AT, "note": note})
        for uid, title, availability in LOCATIONS:
            conn.execute(text("INSERT INTO instance_location (sop_instance_uid, retrieve_ae_title, availability, "
                              "notified_at, notification_id) VALUES (:uid, :title, :availability, :at, :note)"),
                         {"uid": uid, "title": title, "availability": availability, "at": AT, "note": note})
        conn.execute(text("INSERT INTO instance_performed_step (sop_instance_uid, performed_step_uid, "
                          "performed_step_class_uid, notification_id) VALUES ('1.2.3.5', '1.2.6.1', "
                          "'1.2.840.10008.3.1.2.3.3', :note)"), {"note": note})


def _locations(conn, join: str) -> list[tuple]:
    return [tuple(r) for r in conn.execute(text(
        "SELECT i.sop_instance_uid, l.retrieve_ae_title, l.availability FROM instance_location l "
        f"JOIN instance i ON {join} ORDER BY i.sop_instance_uid, l.retrieve_ae_title"))]


def test_instances_are_numbered_in_arrival_order_and_keep_their_locations(url):
    engine = make_engine(url)
    try:
        _seed_at_0019(engine)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT sop_instance_uid FROM instance ORDER BY id")).scalars().all() == ARRIVED
            assert _locations(conn, "i.id = l.instance_id") == LOCATIONS
            assert conn.execute(text("SELECT sop_instance_uid FROM instance_performed_step")).scalars().all() == [
                "1.2.3.5"]
        # A location naming no instance is refused, as before.
        with pytest.raises(Exception, match="(?i)foreign key"), engine.begin() as conn:
            conn.execute(text("INSERT INTO instance_location (instance_id, retrieve_ae_title, availability, "
                              "notified_at, notification_id) SELECT 999, 'PACS', 'ONLINE', :at, id FROM notification"),
                         {"at": AT})
    finally:
        engine.dispose()

    # A server on the migrated database: an IAN numbers on after the migrated instances, and an IAN
    # that moves an instance to another study still sets off migration 0016's trigger (rebuilt on SQLite).
    app = App(test_settings(url))
    try:
        with app.engine.begin() as conn:
            conn.execute(text("INSERT INTO readiness_study (study_instance_uid, pass_id) VALUES ('1.2.7.1', :p)"),
                         {"p": "a" * 32})
        ian = {"0020000D": {"vr": "UI", "Value": ["1.2.7.2"]}, "00081115": {"vr": "SQ", "Value": [{
            "0020000E": {"vr": "UI", "Value": ["1.2.9.2"]}, "00081199": {"vr": "SQ", "Value": [
                {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                 "00081155": {"vr": "UI", "Value": [uid]}, "00080056": {"vr": "CS", "Value": ["ONLINE"]},
                 "00080054": {"vr": "AE", "Value": ["PACS"]}} for uid in ("1.2.3.0", "1.2.3.9")]}}]},
               "00081111": {"vr": "SQ", "Value": []}}
        outcome = app.ingest.receive(Received("1.2.5.2", "ARCHIVE", "test", AT, ian))
        assert outcome.status.code == 0, outcome.comment
        with app.engine.connect() as conn:
            assert conn.execute(text("SELECT sop_instance_uid FROM instance ORDER BY id")).scalars().all() == [
                *ARRIVED, "1.2.3.0"]
            assert conn.execute(text("SELECT pass_id FROM readiness_study WHERE study_instance_uid = '1.2.7.1'")
                                ).scalar_one() == "moved"
    finally:
        app.engine.dispose()


def test_the_migration_reverses(url):
    engine = make_engine(url)
    try:
        _seed_at_0019(engine)
        migrate.upgrade(engine)
        command.downgrade(migrate.alembic_config(engine), "0019")
        with engine.connect() as conn:
            assert _locations(conn, "i.sop_instance_uid = l.sop_instance_uid") == LOCATIONS
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert _locations(conn, "i.id = l.instance_id") == LOCATIONS
    finally:
        engine.dispose()
