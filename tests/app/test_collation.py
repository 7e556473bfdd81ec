"""A PostgreSQL database that collates text by a language's rules is named at start-up, with the remedy:
every UID in an index is then compared by those rules, which slows ingest (docs/performance.md)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timezone

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from testkit.db import drop_database, new_database_url, test_settings
from workflow.app import App
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


def _start_up_warnings(url: str, caplog) -> list[str]:
    app = App(test_settings(url))
    with caplog.at_level(logging.WARNING, logger="workflow"):
        app.start()
        app.stop()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "collates" in r.getMessage()]


def test_a_database_collated_by_a_language_is_named_at_start_up(database_collated, caplog):
    url = database_collated("en_US.UTF-8")
    (warning,) = _start_up_warnings(url, caplog)
    assert make_url(url).database in warning and "en_US.UTF-8" in warning
    assert "LC_COLLATE 'C.UTF-8'" in warning


def test_a_bytewise_database_starts_quietly(database_collated, caplog):
    assert _start_up_warnings(database_collated("C.UTF-8"), caplog) == []


def test_an_inventory_lists_its_studies_in_uid_order_whatever_the_collation(database_collated):
    """A Study Instance UID order a reader can check: code points, not en_US's (which puts "1.21" before
    "1.2.10", its first pass ignoring the dots)."""
    engine = make_engine(database_collated("en_US.UTF-8"))
    migrate.upgrade(engine)
    uids = ["1.2.10", "1.21", "1.2.9", "1.20.1", "1.2.100"]
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            crawl_id = conn.execute(InventoryCrawl.__table__.insert().values(
                archive_ae_title="PACS", scope_key="{}", status=RUNNING, started_at=now)).inserted_primary_key[0]
            listed = json.dumps({"listed_at": now.isoformat(), "series": []})
            conn.execute(InventoryCrawlStudy.__table__.insert(), [
                {"crawl_id": crawl_id, "study_instance_uid": uid, "state": DONE, "detail": "",
                 "study_json": json.dumps(asdict(StudyFacts(uid))), "record_json": listed} for uid in uids])
            assert conn.exec_driver_sql("SELECT '1.21' < '1.2.10'").scalar(), "en_US collates as assumed"
            assert [facts.study_instance_uid for facts, _ in listed_studies(conn, crawl_id)] == sorted(uids)
    finally:
        engine.dispose()
