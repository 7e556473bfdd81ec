"""Reconciliation against a real archive no one here wrote: Orthanc (Debian's package) loaded with
dcmtk's storescu, announced to wfm with IANs, reconciled through Study Root C-FIND. The seeded
discrepancies, and only they, are found; the report verifies, and fails to after tampering; an
archive that goes away mid-run fails the run without reporting anything missing because of it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import text

from testkit.db import test_settings
from testkit.ian import association, instance_item, make_ian, send
from testkit.orthanc import OrthancServer, SeriesSpec, StudySpec, require_orthanc, write_instances
from workflow.app import App
from workflow.reconcile.dimse.holdings_query import StudyRootHoldings
from workflow.reconcile.dimse.peer import ArchiveError
from workflow.reconcile.query_path import ReconcileService
from workflow.reconcile.runs import Archive

pytestmark = pytest.mark.slow

AET = "ORTHANC"


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    """Orthanc holding three studies, all announced to a running wfm, then the seeded drift: one
    announced instance deleted at the archive, one instance at the archive never announced, one
    announced instance never stored, one instance announced NEARLINE."""
    require_orthanc()
    tmp = tmp_path_factory.mktemp("reconcile")
    studies = [StudySpec("P1", date(2026, 11, 20), [SeriesSpec("CT", 3), SeriesSpec("CT", 2)]),
               StudySpec("P2", date(2026, 11, 21), [SeriesSpec("CT", 4)]),
               StudySpec("P3", date(2026, 11, 22), [SeriesSpec("CT", 2)])]
    unannounced = StudySpec("P4", date(2026, 11, 22), [SeriesSpec("CT", 1)])
    write_instances(tmp / "dicom", studies + [unannounced])
    app = App(test_settings(database_url))
    app.start()
    with OrthancServer(aet=AET) as orthanc:
        orthanc.load(tmp / "dicom")
        never_stored = generate_uid()
        for study in studies:
            series = {s.uid: [instance_item(sop, ae=(AET,)) for sop in s.sop_uids] for s in study.series}
            if study is studies[2]:
                series[study.series[0].uid].append(instance_item(never_stored, ae=(AET,)))
            with association(app.dicom.port, calling_ae="ARCHIVE") as assoc:
                assert send(assoc, make_ian(study.uid, series))[0].Status == 0
        deleted = studies[0].series[1].sop_uids[0]
        orthanc.delete_instance(deleted)
        seeded = {("MISSING_IN_ARCHIVE", studies[0].uid, deleted),
                  ("MISSING_IN_ARCHIVE", studies[2].uid, never_stored),
                  ("UNEXPECTED_IN_ARCHIVE", unannounced.uid, unannounced.series[0].sop_uids[0])}
        yield app, orthanc, studies, seeded, tmp
    app.stop()


def wfm(tmp, database_url, *args, check=True) -> subprocess.CompletedProcess:
    config = tmp / "cli.toml"
    config.write_text(f'database_url = "{database_url}"\nae_title = "WFM"\n')
    result = subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_the_seeded_discrepancies_and_only_they_are_found(world, database_url):
    app, orthanc, studies, seeded, tmp = world
    run = wfm(tmp, database_url, "reconcile", "run", "--ae", AET, "--host", "127.0.0.1",
              "--port", str(orthanc.dicom_port))
    run_uid = run.stdout.strip().splitlines()[-1]
    report = json.loads(wfm(tmp, database_url, "report", "show", run_uid, "--format", "json").stdout)
    assert report["run_uid"] == run_uid and report["status"] == "COMPLETED" and report["method"] == "query"
    found = {(d["reason"], d["study_instance_uid"], d["sop_instance_uid"]) for d in report["discrepancies"]}
    assert found == seeded
    assert report["counts"]["by_reason"]["MISSING_IN_ARCHIVE"] == 2
    assert report["counts"]["by_reason"]["UNEXPECTED_IN_ARCHIVE"] == 1
    assert run_uid in wfm(tmp, database_url, "report", "list").stdout

    csv_text = wfm(tmp, database_url, "report", "show", run_uid, "--format", "csv").stdout
    assert len(csv_text.strip().splitlines()) == 1 + len(seeded)
    html = tmp / "report.html"
    wfm(tmp, database_url, "report", "show", run_uid, "--format", "html", "-o", str(html))
    assert report_sha(app, run_uid) in html.read_text()

    assert wfm(tmp, database_url, "report", "verify", run_uid).stdout.startswith("OK")
    with app.engine.begin() as conn:
        conn.execute(text("UPDATE discrepancy SET detail = 'nothing to see' WHERE run_id = "
                          "(SELECT id FROM reconciliation_run WHERE run_uid = :u)"), {"u": run_uid})
    tampered = wfm(tmp, database_url, "report", "verify", run_uid, check=False)
    assert tampered.returncode == 1 and tampered.stdout.startswith("CHANGED")


def report_sha(app: App, run_uid: str) -> str:
    with app.engine.connect() as conn:
        return conn.execute(text("SELECT report_sha256 FROM reconciliation_run WHERE run_uid = :u"),
                            {"u": run_uid}).scalar_one()


def test_ians_after_the_cut_off_cause_no_findings(world):
    app, orthanc, studies, seeded, tmp = world
    late_sop = generate_uid()

    class AnnounceDuringRun(StudyRootHoldings):
        """An IAN for an instance the archive does not hold arrives while the run is under way."""
        def studies(self, scope=None):
            with association(app.dicom.port, calling_ae="ARCHIVE") as assoc:
                ian = make_ian(studies[1].uid, {studies[1].series[0].uid: [instance_item(late_sop, ae=(AET,))]})
                assert send(assoc, ian)[0].Status == 0
            return super().studies(scope)

    with AnnounceDuringRun("WFM", AET, "127.0.0.1", orthanc.dicom_port) as holdings:
        result = ReconcileService(app.engine).run(Archive(AET, "127.0.0.1", orthanc.dicom_port), holdings,
                                                  archive_error=ArchiveError)
    assert result.status == "COMPLETED"
    assert result.counts["totals"]["skipped"] == 1
    assert result.counts["by_reason"]["MISSING_IN_ARCHIVE"] == 2  # the seeded ones, not the late IAN


def test_an_archive_going_away_mid_run_fails_the_run_and_reports_nothing_missing(world, database_url, tmp_path):
    app, _, studies, _, tmp = world
    spec = [StudySpec("Q1", date(2026, 11, 23), [SeriesSpec("CT", 1)]) for _ in range(5)]
    write_instances(tmp_path / "dicom", spec)
    with OrthancServer(aet="GOING") as going:
        going.load(tmp_path / "dicom")
        for study in spec:
            with association(app.dicom.port, calling_ae="ARCHIVE") as assoc:
                series = {s.uid: [instance_item(sop, ae=("GOING",)) for sop in s.sop_uids] for s in study.series}
                assert send(assoc, make_ian(study.uid, series))[0].Status == 0

        class StopsAfterOneStudy(StudyRootHoldings):
            answered = 0

            def instances(self, study_uid, series_uid=None):
                if self.answered == 1:
                    going.stop()
                self.answered += 1
                return super().instances(study_uid, series_uid)

        with StopsAfterOneStudy("WFM", "GOING", "127.0.0.1", going.dicom_port, timeout=5) as holdings:
            result = ReconcileService(app.engine).run(Archive("GOING", "127.0.0.1", going.dicom_port), holdings,
                                                      archive_error=ArchiveError)
    assert result.status == "FAILED" and "stopped answering" in result.error
    assert result.counts["by_reason"]["MISSING_IN_ARCHIVE"] == 0
    assert result.counts["by_reason"]["UNEXPECTED_IN_ARCHIVE"] == 0


def test_an_archive_not_listening_is_a_failed_run(world, tmp_path):
    app = world[0]
    from testkit.orthanc import free_port
    port = free_port()
    holdings = StudyRootHoldings("WFM", "NOBODY", "127.0.0.1", port, timeout=3)
    result = ReconcileService(app.engine).run(Archive("NOBODY", "127.0.0.1", port), holdings,
                                              archive_error=ArchiveError)
    holdings.close()
    assert result.status == "FAILED" and result.counts["by_reason"]["MISSING_IN_ARCHIVE"] == 0


