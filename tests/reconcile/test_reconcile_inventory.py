"""Reconciliation through the Inventory path (Sup 223), end to end over real associations on SQLite and
PostgreSQL: IANs announce what the reference archive holds, the archive is made to differ, and
`reconcile_job.run` finds exactly the seeded discrepancies from an Inventory tree split over several
instances, fetched by C-GET or by C-MOVE to our own Storage SCP; a PARTIAL inventory never makes a
study missing; an archive that is gone gives a FAILED run; the mark_unavailable policy feeds findings
back. Each test seeds studies of its own and scopes its run to them."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from testkit.ian import association, instance_item, make_ian, send
from testkit.reconcile import RUN, findings
from refarchive import ReferenceArchive
from workflow.reconcile import job as reconcile_job
from workflow.config import Reconcile
from workflow.reconcile.rules.compare import Reason
from workflow.reconcile.job import Target
from workflow.reconcile import feedback as reconcile_feedback
from workflow.reconcile import reports
from workflow.ian.tables import Instance, InstanceLocation
from workflow.reconcile.tables import COMPLETED, FAILED

pytestmark = pytest.mark.slow

AET = "INVARCH"


@pytest.fixture(scope="module")
def archive(server, make_archive):
    """The reference archive, 2 study records per Inventory instance (every inventory is a tree),
    knowing our server's address for C-MOVE."""
    return make_archive(AET, record_limit=2, fanout=2,
                        move_destinations={server.settings.ae_title: ("127.0.0.1", server.dicom.port)})


def announce(server, seeded, skip: set[str] = frozenset(), extra: dict[int, str] | None = None) -> None:
    """IANs from the archive for every seeded instance (but `skip`), plus `extra` {study index: SOP UID}
    instances the archive never stored."""
    with association(server.dicom.port, calling_ae=AET) as assoc:
        for k in range(seeded.studies):
            series = {seeded.series_uid(k, s): [instance_item(seeded.instance_uid(k, s, i), ae=(AET,))
                                                for i in range(seeded.instances_per_series)
                                                if seeded.instance_uid(k, s, i) not in skip]
                      for s in range(seeded.series_per_study)}
            if extra and k in extra:
                series[seeded.series_uid(k, 0)].append(instance_item(extra[k], ae=(AET,)))
            assert send(assoc, make_ian(seeded.study_uid(k), series))[0].Status == 0


def reconcile(server, archive, study_uids, **options):
    options.setdefault("inventory_max_age_hours", 0)  # the archive changes between runs: a new inventory each
    target = Target(AET, "127.0.0.1", archive.port, Reconcile(method="inventory", **options))
    return reconcile_job.run(server.settings, server.engine, target, study_uids=tuple(study_uids), studies=server.readiness)


def run_row(engine, run_uid: str):
    with engine.connect() as conn:
        return conn.execute(select(RUN).where(RUN.c.run_uid == run_uid)).one()


@pytest.mark.parametrize("retrieve", ["get", "move"])
def test_seeded_discrepancies_are_found_exactly(server, archive, retrieve):
    seeded = archive.holdings.seed(5, 2, 3)
    never_stored = f"{seeded.study_uid(0)}.99.1"
    announce(server, seeded, extra={0: never_stored})
    unannounced = archive.holdings.seed(1, 1, 2)  # held, announced by no IAN
    lost, offline, removed = seeded.instance_uid(1, 0, 0), seeded.instance_uid(2, 1, 2), seeded.instance_uid(3, 0, 1)
    archive.holdings.lose_instance(lost)
    archive.holdings.set_availability("OFFLINE", instance=offline)
    archive.holdings.mark_removed(instance=removed)
    studies = seeded.study_uids + unannounced.study_uids

    result = reconcile(server, archive, studies, retrieve=retrieve)

    assert result.status == COMPLETED, result.error
    assert findings(server.engine, result.run_uid) == {
        (Reason.MISSING_IN_ARCHIVE, seeded.study_uid(0), never_stored),
        (Reason.MISSING_IN_ARCHIVE, seeded.study_uid(1), lost),
        (Reason.AVAILABILITY_MISMATCH, seeded.study_uid(2), offline),
        (Reason.AVAILABILITY_MISMATCH, seeded.study_uid(3), removed),
        *{(Reason.UNEXPECTED_IN_ARCHIVE, unannounced.study_uid(0), unannounced.instance_uid(0, 0, i))
          for i in range(2)},
    }
    run = run_row(server.engine, result.run_uid)
    assert run.method == "inventory"
    source = json.loads(run.scope)["source"]
    assert source["completion_status"] == "COMPLETE" and source["inventory_uid"]
    assert json.loads(run.counts)["totals"]["matched"] == 30 - 3
    assert reports.verify(server.engine, run.id).ok
    if retrieve == "move":  # taken out of the Storage SCP's table once read
        from workflow.reconcile import received as received_inventories
        assert received_inventories.present(server.engine) == []


def test_a_partial_inventory_reports_unlisted_studies_as_unchecked_never_missing(server, archive):
    seeded = archive.holdings.seed(6, 1, 2)
    announce(server, seeded)
    archive.faults.creation_partial_after = 4  # production stops after 4 of the 6 study records
    try:
        result = reconcile(server, archive, seeded.study_uids)
    finally:
        archive.faults.creation_partial_after = None
    assert result.status == COMPLETED, result.error
    found = findings(server.engine, result.run_uid)
    assert {f[0] for f in found} == {Reason.ARCHIVE_ERROR}  # nothing missing: the rest is unknown
    listed = set(sorted(seeded.study_uids)[:4])
    assert {f[1] for f in found} == set(seeded.study_uids) - listed
    assert json.loads(run_row(server.engine, result.run_uid).scope)["source"]["completion_status"] == "PARTIAL"


def test_an_archive_that_is_gone_gives_a_failed_run_and_nothing_missing(server, archive):
    seeded = archive.holdings.seed(2, 1, 2)
    announce(server, seeded)
    archive.faults.creation_fail_after = 1  # production fails: the archive keeps nothing
    try:
        failed = reconcile(server, archive, seeded.study_uids)
    finally:
        archive.faults.creation_fail_after = None
    assert failed.status == FAILED and "inventory could not be obtained" in failed.error
    assert findings(server.engine, failed.run_uid) == set()
    archive.faults.abort_after(1)  # the archive drops an association once, mid-run
    try:
        dropped = reconcile(server, archive, seeded.study_uids)
    finally:
        archive.faults.disarm()
    # Where the events come, the client asks again on a new association and the run completes; during
    # a retrieval the run fails. Either way nothing is reported missing because of it.
    assert findings(server.engine, dropped.run_uid) == set()
    if dropped.status == COMPLETED:
        assert json.loads(run_row(server.engine, dropped.run_uid).counts)["totals"]["matched"] == 4
    else:
        assert dropped.status == FAILED and "inventory could not be obtained" in dropped.error
    nobody = Target(AET, "127.0.0.1", 1, Reconcile(method="inventory"))  # nothing listens on port 1
    gone = reconcile_job.run(server.settings, server.engine, nobody, study_uids=tuple(seeded.study_uids), studies=server.readiness)
    assert gone.status == FAILED and findings(server.engine, gone.run_uid) == set()


def test_the_archive_stopping_mid_production_fails_the_run_and_reports_nothing_missing(server, monkeypatch):
    from workflow.reconcile.dimse import inventory_client
    monkeypatch.setattr(inventory_client, "POLL_AFTER", 0.5)  # its status polls are refused, quickly
    with ReferenceArchive(ae_title=AET, record_limit=2, fanout=2) as going:
        seeded = going.holdings.seed(6, 1, 2)
        announce(server, seeded)
        going.faults.creation_study_delay = 0.2  # production takes a while: time to go away in

        def stop_once_producing() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(t.records for t in list(going.creation.transactions.values())):
                time.sleep(0.01)
            going.stop()

        stopper = threading.Thread(target=stop_once_producing)
        stopper.start()
        try:
            result = reconcile(server, going, seeded.study_uids)
        finally:
            stopper.join()
        assert going.creation.transactions, "production never started"
    assert result.status == FAILED and "inventory could not be obtained" in result.error
    assert findings(server.engine, result.run_uid) == set()


def test_mark_unavailable_feeds_findings_back_and_marks_the_studies_for_readiness(server, archive):
    seeded = archive.holdings.seed(2, 1, 3)
    announce(server, seeded)
    lost, nearline, later = seeded.instance_uid(0, 0, 0), seeded.instance_uid(1, 0, 1), seeded.instance_uid(1, 0, 2)
    archive.holdings.lose_instance(lost)
    archive.holdings.set_availability("NEARLINE", instance=nearline)

    def availability() -> dict[str, str]:
        L, I = InstanceLocation.__table__, Instance.__table__
        with server.engine.connect() as conn:
            return dict(conn.execute(select(I.c.sop_instance_uid, L.c.availability).join(L, L.c.instance_id == I.c.id)
                                     .where(L.c.retrieve_ae_title == AET,
                                            I.c.sop_instance_uid.in_([lost, nearline, later]))).all())

    reported = reconcile(server, archive, seeded.study_uids)  # the default: findings only reported
    assert reported.status == COMPLETED and availability() == {lost: "ONLINE", nearline: "ONLINE", later: "ONLINE"}
    applied = reconcile_feedback.apply(server.engine, reported.run_uid, AET, server.readiness)
    assert (applied.instances_changed, applied.studies_marked) == (2, 2)
    assert availability() == {lost: "UNAVAILABLE", nearline: "NEARLINE", later: "ONLINE"}
    assert reconcile_feedback.apply(server.engine, reported.run_uid, AET, server.readiness).instances_changed == 0  # idempotent

    archive.holdings.set_availability("OFFLINE", instance=later)
    fed = reconcile(server, archive, seeded.study_uids, feedback="mark_unavailable")
    # What we now believe agrees with the archive but for the lost instance: still MISSING (we know of
    # it, UNAVAILABLE, and the archive lacks it) and the instance that went OFFLINE since, now fed back.
    assert findings(server.engine, fed.run_uid) == {(Reason.MISSING_IN_ARCHIVE, seeded.study_uid(0), lost),
                                                    (Reason.AVAILABILITY_MISMATCH, seeded.study_uid(1), later)}
    assert availability() == {lost: "UNAVAILABLE", nearline: "NEARLINE", later: "OFFLINE"}


def next_second() -> None:
    """Wait for the wall clock to enter a new second (an Inventory's Content Time has whole seconds)."""
    import time
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.01)


def test_a_recent_inventory_is_reused_and_what_was_announced_after_it_is_not_checked(server, archive):
    from refarchive.scope import Scope as ArchiveScope

    seeded = archive.holdings.seed(3, 1, 2)
    announce(server, seeded)
    next_second()
    built = archive.build_inventory("INSTANCE", scope=ArchiveScope(study_uids=list(seeded.study_uids)))
    next_second()
    announced_later = f"{seeded.study_uid(2)}.77.1"  # stored and announced after the inventory was taken
    with association(server.dicom.port, calling_ae=AET) as assoc:
        ian = make_ian(seeded.study_uid(2), {seeded.series_uid(2): [instance_item(announced_later, ae=(AET,))]})
        assert send(assoc, ian)[0].Status == 0

    result = reconcile(server, archive, seeded.study_uids, inventory_max_age_hours=24)

    assert result.status == COMPLETED
    run = run_row(server.engine, result.run_uid)
    assert json.loads(run.scope)["source"]["inventory_uid"] == built.root_uid  # found, not requested
    assert findings(server.engine, result.run_uid) == set()  # announced_later is not MISSING
    totals = json.loads(run.counts)["totals"]
    assert (totals["matched"], totals["skipped"]) == (6, 1)
