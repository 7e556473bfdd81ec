"""The Inventory path's report, pinned: three runs (the whole archive, a modality scope, a Study Date
scope that leaves expected studies unlisted) over a reference archive made to differ from our records
in every way a finding can say, on SQLite and PostgreSQL, must give exactly the findings (reasons,
order, every field) and counts recorded in `inventory_report_golden.json`.

The golden file was written by the implementation before the Inventory path was made fast (a spool of
one row per instance and a merge-join over Holding objects); the faster path must not change a byte of
the report. Only what differs from run to run (run UID, times, port, inventory UID, software version)
is replaced before comparing. Regenerate (only for an intended change of results) with
WFM_WRITE_GOLDEN=1 on the SQLite run, and say why in the commit."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select

from testkit.db import test_settings
from workflow.config import Reconcile
from workflow.ian.tables import Instance, InstanceLocation, Notification
from workflow.reconcile import job as reconcile_job
from workflow.reconcile import reports
from workflow.reconcile.job import Target
from workflow.reconcile.tables import COMPLETED, DiscrepancyRow, ReconciliationRun

pytestmark = pytest.mark.slow

AET = "GOLDARCH"
ROOT = "1.2.826.0.1.3680043.10.543.77"
GOLDEN = Path(__file__).with_name("inventory_report_golden.json")
RUN, FINDING = ReconciliationRun.__table__, DiscrepancyRow.__table__
SETTLED = datetime.now(timezone.utc) - timedelta(days=1)  # within the days scope; before any cut-off
UNSETTLED = datetime(2099, 1, 1, tzinfo=timezone.utc)  # announced after the cut-off: never checked
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def archive(make_archive, engine):
    """The archive (several Inventory instances per tree) and our records of it, made to differ."""
    archive = make_archive(AET, record_limit=4, fanout=2)
    h = archive.holdings
    # k is 0-based: ct.study_uid(k) is study number k + 1. Study n is dated 40 - n days ago: studies 1-9
    # fall outside a 30-day scope, 10-15 inside.
    start = date.today() - timedelta(days=40)
    ct = h.seed(12, 2, 3, root=ROOT, first_study=1, modality="CT", start_date=start)
    mr = h.seed(3, 1, 2, root=ROOT, first_study=13, modality="MR", start_date=start)
    ours = {(s.study_uid(k), s.series_uid(k, j), s.instance_uid(k, j, i)): ("ONLINE", None, SETTLED)
            for s in (ct, mr) for k in range(s.studies) for j in range(s.series_per_study)
            for i in range(s.instances_per_series)}
    uid = ct.instance_uid

    # Our side differs: never held, never held (a whole study), not yet settled, other availability / URL.
    ours[(ct.study_uid(1), ct.series_uid(1, 0), f"{ROOT}.2.1.99")] = ("ONLINE", None, SETTLED)
    for i in (1, 2):
        ours[(f"{ROOT}.50", f"{ROOT}.50.1", f"{ROOT}.50.1.{i}")] = ("ONLINE", None, SETTLED)
    ours[(ct.study_uid(2), ct.series_uid(2, 0), uid(2, 0, 1))] = ("ONLINE", None, UNSETTLED)
    ours[(ct.study_uid(2), ct.series_uid(2, 0), f"{ROOT}.3.1.98")] = ("ONLINE", None, UNSETTLED)
    ours[(ct.study_uid(3), ct.series_uid(3, 0), uid(3, 0, 0))] = ("NEARLINE", None, SETTLED)
    ours[(ct.study_uid(3), ct.series_uid(3, 1), uid(3, 1, 0))] = ("ONLINE", "http://here/4", SETTLED)
    ours[(ct.study_uid(3), ct.series_uid(3, 1), uid(3, 1, 1))] = ("ONLINE", "http://there/4", SETTLED)
    del ours[(ct.study_uid(4), ct.series_uid(4, 1), uid(4, 1, 2))]

    # The archive differs: lost, OFFLINE / NEARLINE, removed at every level, held elsewhere, unannounced.
    h.lose_instance(uid(5, 0, 0))
    h.lose_series(ct.series_uid(5, 1))
    h.set_availability("OFFLINE", instance=uid(6, 0, 0))
    h.set_availability("NEARLINE", series=ct.series_uid(6, 1))
    h.mark_removed(instance=uid(7, 0, 1))
    h.mark_removed(series=ct.series_uid(7, 1))
    h.mark_removed(study=ct.study_uid(8))
    # (This archive lists Retrieve AE Title and URL per study: every AE any instance has, one URL if shared.)
    h.set_retrieve(ae_title="OTHER", study=ct.study_uid(9))
    h.set_availability("OFFLINE", instance=uid(9, 0, 0))  # two findings on one instance
    h.set_retrieve(ae_title="OTHER", instance=uid(11, 0, 0))  # the study says "GOLDARCH\\OTHER": agreement
    h.set_retrieve(url="http://there/4", study=ct.study_uid(3))
    h.set_availability("OFFLINE", instance=uid(10, 0, 0))
    h.add_unannounced(series_uid=ct.series_uid(10, 0), sop_instance_uid=f"{ROOT}.11.1.77")
    h.lose_instance(mr.instance_uid(1, 0, 1))
    h.seed(1, 1, 2, root=ROOT, first_study=60, modality="CT", start_date=date.today())

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        note = conn.execute(insert(Notification).values(
            sop_instance_uid=f"{ROOT}.999", study_instance_uid=ct.study_uid(0), calling_ae_title=AET,
            peer_address="test", received_at=at, instance_count=len(ours), content_sha256="0" * 64,
            dataset_json="{}")).inserted_primary_key[0]
        numbered = conn.execute(insert(Instance).returning(Instance.id, sort_by_parameter_order=True), [dict(
            sop_instance_uid=sop, sop_class_uid=CT_IMAGE, series_instance_uid=series, study_instance_uid=study,
            first_notified_at=SETTLED, last_notified_at=notified, last_notification_id=note)
            for (study, series, sop), (_, _, notified) in ours.items()]).scalars().all()
        conn.execute(insert(InstanceLocation), [dict(
            instance_id=number, retrieve_ae_title=AET, availability=availability, retrieve_url=url,
            notified_at=notified, notification_id=note)
            for number, (availability, url, notified) in zip(numbered, ours.values())])
    return archive


def normalized_report(engine, run_uid: str) -> dict:
    """The run's canonical JSON with what differs between runs replaced by fixed values."""
    with engine.connect() as conn:
        row = conn.execute(select(RUN).where(RUN.c.run_uid == run_uid)).one()
        scope = json.loads(row.scope)
        scope["source"]["inventory_uid"] = "<inventory>"
        fixed = datetime(2000, 1, 1, tzinfo=timezone.utc)
        run = SimpleNamespace(**{**row._asdict(), "run_uid": "<run>", "archive_port": 0, "scope": json.dumps(scope),
                                 "cutoff": fixed, "started_at": fixed, "ended_at": fixed,
                                 "software_version": "<version>"})
        rows = conn.execute(select(FINDING).where(FINDING.c.run_id == row.id).order_by(FINDING.c.seq)).all()
        return json.loads(reports.canonical_json(run, rows))


RUNS = {"all": {}, "modality MR": {"modalities": ("MR",)}, "last 30 days": {"days": 30}}


def test_reports_equal_the_golden_file(archive, engine, database_url):
    got = {}
    for name, options in RUNS.items():
        target = Target(AET, "127.0.0.1", archive.port, Reconcile(method="inventory", inventory_max_age_hours=0,
                                                                 **options))
        result = reconcile_job.run(test_settings(database_url), engine, target, studies=None)
        assert result.status == COMPLETED, result.error
        with engine.connect() as conn:
            run_id = conn.execute(select(RUN.c.id).where(RUN.c.run_uid == result.run_uid)).scalar_one()
        assert reports.verify(engine, run_id).ok
        got[name] = normalized_report(engine, result.run_uid)
    if os.environ.get("WFM_WRITE_GOLDEN") and database_url.startswith("sqlite"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    for name in RUNS:  # one run at a time, so that a failure names it
        assert got[name] == golden[name], name
    # The data set says every reason the Inventory path can find (COUNT_MISMATCH is the query path's).
    reasons = {f["reason"] for run in got.values() for f in run["discrepancies"]}
    assert reasons == {"MISSING_IN_ARCHIVE", "UNEXPECTED_IN_ARCHIVE", "AVAILABILITY_MISMATCH", "LOCATION_MISMATCH",
                       "ARCHIVE_ERROR"}
    assert got["all"]["counts"]["totals"]["skipped"] == 2 and got["last 30 days"]["counts"]["totals"]["unchecked"]
