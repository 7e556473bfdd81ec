"""On a PostgreSQL database that collates text by a language's rules, UIDs still compare as bytes: in
their indexes (ingest speed) and in what is listed in UID order (docs/performance.md)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone

import pytest
from sqlalchemy.exc import DBAPIError

from testkit.db import drop_database, new_database_url
from workflow.ian.tables import Instance, Notification
from workflow.inventory.crawl import listed_studies
from workflow.inventory.rules.iod import StudyFacts
from workflow.inventory.tables import DONE, RUNNING, InventoryCrawl, InventoryCrawlStudy
from workflow.store import migrate
from workflow.store.engine import make_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_collated(postgres_admin_url, tmp_path):
    """Makes a database of the given collation (skips where the server lacks that locale)."""
    made = []

    def make(locale: str) -> str:
        try:
            made.append(new_database_url("postgresql", tmp_path, postgres_admin_url, locale))
        except DBAPIError as exc:
            pytest.skip(f"this PostgreSQL cannot create a {locale} database: {exc.orig}")
        return made[-1]

    yield make
    for url in made:
        drop_database(url, postgres_admin_url)


# en_US's rules put "1.21" before "1.2.10": its first pass ignores the dots.
UIDS = ["1.2.10", "1.21", "1.2.9", "1.20.1", "1.2.100"]


@pytest.fixture
def en_us(database_collated):
    """A migrated engine on an en_US.UTF-8 database."""
    engine = make_engine(database_collated("en_US.UTF-8"))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT '1.21' < '1.2.10'").scalar(), "en_US collates as assumed"
    yield engine
    engine.dispose()


def test_uid_columns_compare_bytewise_on_a_database_collated_by_a_language(en_us):
    """en_US's rules compared every UID in an index (ingest of 100-instance IANs ran a fifth slower) and
    ordered them for reading. Every UID column is COLLATE "C"."""
    now = datetime.now(timezone.utc)
    with en_us.begin() as conn:
        note = conn.execute(Notification.__table__.insert().values(
            sop_instance_uid="1.2.3.4", study_instance_uid="1.2.3", calling_ae_title="PACS", peer_address="",
            received_at=now, instance_count=0, content_sha256="0" * 64, dataset_json="{}")).inserted_primary_key[0]
        conn.execute(Instance.__table__.insert(), [
            {"sop_instance_uid": uid, "sop_class_uid": "1.2.3", "series_instance_uid": uid, "study_instance_uid": uid,
             "first_notified_at": now, "last_notified_at": now, "last_notification_id": note} for uid in UIDS])
        for column in ("sop_instance_uid", "series_instance_uid", "study_instance_uid"):
            assert conn.exec_driver_sql(f"SELECT {column} FROM instance ORDER BY {column}").scalars().all() \
                == sorted(UIDS)
        assert conn.exec_driver_sql("SELECT count(*) FROM instance WHERE sop_instance_uid < '1.2.10'").scalar() == 0


def test_an_inventory_lists_its_studies_in_uid_order_whatever_the_collation(en_us):
    """A Study Instance UID order a reader can check: code points, not en_US's."""
    now = datetime.now(timezone.utc)
    with en_us.begin() as conn:
        crawl_id = conn.execute(InventoryCrawl.__table__.insert().values(
            archive_ae_title="PACS", scope_key="{}", status=RUNNING, started_at=now)).inserted_primary_key[0]
        listed = json.dumps({"listed_at": now.isoformat(), "series": []})
        conn.execute(InventoryCrawlStudy.__table__.insert(), [
            {"crawl_id": crawl_id, "study_instance_uid": uid, "state": DONE, "detail": "",
             "study_json": json.dumps(asdict(StudyFacts(uid))), "record_json": listed} for uid in UIDS])
        assert [facts.study_instance_uid for facts, _ in listed_studies(conn, crawl_id)] == sorted(UIDS)
