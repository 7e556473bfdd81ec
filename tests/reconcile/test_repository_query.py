"""The query path over Repository Query (Sup 223, PS3.4 C.6.4) against the reference archive, over real
associations on 127.0.0.1: the listing is paged by Record Key (the archive's own limit and ours),
resumes after an abort without losing or repeating a record, falls back to Study Root C-FIND where
the archive does not offer Repository Query, and sees Removed from Operational Use at every level;
end to end, `reconcile_job.run` with method "query" finds exactly the seeded discrepancies on SQLite
and PostgreSQL and records the run as "repository"."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from testkit.ian import association, instance_item, make_ian, send
from testkit.reconcile import RUN, findings
from refarchive import ReferenceArchive
from workflow.reconcile import job as reconcile_job
from workflow.config import Reconcile
from workflow.reconcile.dimse.holdings_query import StudyRootHoldings
from workflow.reconcile.dimse.peer import ArchiveError
from workflow.reconcile.dimse.repository_query import RepositoryHoldings
from workflow.reconcile.rules.compare import Reason
from workflow.reconcile.rules.scope import HoldingsScope
from workflow.reconcile.job import Target
from workflow.reconcile import reports
from workflow.reconcile.tables import COMPLETED

AET = "REPOARCH"


@pytest.fixture(scope="module")
def archive(make_archive):
    """At most 4 matches per Repository Query transaction: every listing here takes several."""
    return make_archive(AET, repository_page_limit=4)


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("archive_faults_reset")]


def client(archive, kind=RepositoryHoldings, **kw):
    return kind("WFM", archive.ae_title, "127.0.0.1", archive.port, timeout=5, **kw)


def listing(holdings, study_uids) -> list:
    return [h for study in study_uids for h in holdings.instances(study)]


def test_listing_is_paged_and_equals_the_study_root_listing(archive):
    seeded = archive.holdings.seed(6, 2, 5)
    scope = HoldingsScope(study_uids=tuple(seeded.study_uids))
    with client(archive, page_size=3) as repo, client(archive, StudyRootHoldings) as plain:
        assert repo.repository and plain.model != repo.model
        assert [s.study_uid for s in repo.studies(scope)] == [s.study_uid for s in plain.studies(scope)]
        assert repo.transactions == 2  # 6 studies, 3 per transaction (ours is the smaller limit)
        before = repo.transactions
        got = listing(repo, seeded.study_uids)
        assert got == listing(plain, seeded.study_uids) and len(got) == 60
        assert len({h.sop_uid for h in got}) == 60
        # Per study: one SERIES level transaction, and 10 instances at most 3 each (the archive's own
        # limit, 4, is larger): 4 transactions.
        assert repo.transactions - before == 6 * (1 + 4)


def test_an_abort_mid_listing_resumes_after_the_last_record_without_loss_or_repeat(archive):
    seeded = archive.holdings.seed(2, 1, 10)
    with client(archive, StudyRootHoldings) as plain:
        expected = listing(plain, seeded.study_uids)
    with client(archive, page_size=100) as repo:
        archive.abort_after(6)  # the series query takes one response; then 5 instances, and the abort
        got = listing(repo, seeded.study_uids)
        assert repo.resumed == 1
    assert got == expected


def test_an_archive_that_keeps_failing_fails_the_query(archive):
    seeded = archive.holdings.seed(1, 1, 10)
    with client(archive, page_size=100, resume_attempts=1) as repo:
        archive.abort_after(3)
        with pytest.raises(ArchiveError):
            # After the first abort, every re-association is aborted at once as well.
            original = archive.faults.should_abort
            archive.faults.should_abort = lambda: True
            try:
                listing(repo, seeded.study_uids)
            finally:
                archive.faults.should_abort = original
        assert repo.resumed == 1


def test_an_archive_ignoring_the_prior_record_key_fails_the_query_instead_of_looping(archive):
    seeded = archive.holdings.seed(1, 1, 6)
    archive._repository._narrow = lambda identifier, level, where: None  # always from the first record
    try:
        with client(archive, page_size=4) as repo, pytest.raises(ArchiveError, match="without advancing"):
            listing(repo, seeded.study_uids)
    finally:
        del archive._repository._narrow


def test_without_repository_query_the_archive_is_listed_by_study_root():
    with ReferenceArchive(ae_title="PLAINARCH", repository_query=False) as plain_archive:
        seeded = plain_archive.holdings.seed(2, 1, 3)
        plain_archive.holdings.mark_removed(instance=seeded.instance_uid(0, 0, 0))
        with client(plain_archive) as repo:
            assert not repo.repository and repo.model == StudyRootHoldings.MODELS[0]
            got = listing(repo, seeded.study_uids)
            assert len(got) == 6 and not any(h.removed for h in got)  # Study Root does not ask
            assert repo.transactions == 0


def test_removal_is_seen_at_the_level_the_archive_records_it(archive):
    seeded = archive.holdings.seed(3, 2, 2)
    archive.holdings.mark_removed(instance=seeded.instance_uid(0, 0, 1))
    archive.holdings.mark_removed(series=seeded.series_uid(1, 1))
    archive.holdings.mark_removed(study=seeded.study_uid(2))
    removed = {seeded.instance_uid(0, 0, 1), *(seeded.instance_uid(1, 1, i) for i in range(2)),
               *(seeded.instance_uid(2, s, i) for s in range(2) for i in range(2))}
    scope = HoldingsScope(study_uids=tuple(seeded.study_uids))
    # An archive that records removal only where it was made, and answers N below it (C.6.4.1.2
    # lets a higher level's Y supersede without being repeated).
    image_rows = archive._repository._image

    def only_own_flag(conn, where):
        for known in image_rows(conn, where):
            own = archive.holdings.instance(known["SOPInstanceUID"])["instance_removed"]
            known["RemovedFromOperationalUse"] = "Y" if own else "N"
            yield known

    for image_level in (image_rows, only_own_flag):
        archive._repository._image = image_level
        try:
            with client(archive) as repo:
                list(repo.studies(scope))
                got = listing(repo, seeded.study_uids)
        finally:
            archive._repository._image = image_rows
        assert {h.sop_uid for h in got if h.removed} == removed


# -- end to end: reconcile_job.run over the query path ---------------------------------------------------


def announce(server, seeded, extra: dict[int, str] | None = None) -> None:
    with association(server.dicom.port, calling_ae=AET) as assoc:
        for k in range(seeded.studies):
            series = {seeded.series_uid(k, s): [instance_item(seeded.instance_uid(k, s, i), ae=(AET,))
                                                for i in range(seeded.instances_per_series)]
                      for s in range(seeded.series_per_study)}
            if extra and k in extra:
                series[seeded.series_uid(k, 0)].append(instance_item(extra[k], ae=(AET,)))
            assert send(assoc, make_ian(seeded.study_uid(k), series))[0].Status == 0


def test_the_query_path_finds_exactly_the_seeded_discrepancies_through_repository_query(server, archive):
    seeded = archive.holdings.seed(5, 2, 3)
    never_stored = f"{seeded.study_uid(0)}.99.1"
    announce(server, seeded, extra={0: never_stored})
    unannounced = archive.holdings.seed(1, 1, 2)
    lost, offline = seeded.instance_uid(1, 0, 0), seeded.instance_uid(2, 1, 2)
    archive.holdings.lose_instance(lost)
    archive.holdings.set_availability("OFFLINE", instance=offline)
    archive.holdings.mark_removed(series=seeded.series_uid(3, 1))
    studies = tuple(seeded.study_uids + unannounced.study_uids)
    drift = {
        (Reason.MISSING_IN_ARCHIVE, seeded.study_uid(0), never_stored),
        (Reason.MISSING_IN_ARCHIVE, seeded.study_uid(1), lost),
        (Reason.AVAILABILITY_MISMATCH, seeded.study_uid(2), offline),
        *{(Reason.UNEXPECTED_IN_ARCHIVE, unannounced.study_uid(0), unannounced.instance_uid(0, 0, i))
          for i in range(2)},
    }
    removed = {(Reason.AVAILABILITY_MISMATCH, seeded.study_uid(3), seeded.instance_uid(3, 1, i)) for i in range(3)}

    target = Target(AET, "127.0.0.1", archive.port, Reconcile(method="query"))
    result = reconcile_job.run(server.settings, server.engine, target, study_uids=studies, studies=server.readiness)
    assert result.status == COMPLETED, result.error
    assert findings(server.engine, result.run_uid) == drift | removed
    with server.engine.connect() as conn:
        run = conn.execute(select(RUN).where(RUN.c.run_uid == result.run_uid)).one()
    assert run.method == "repository"
    assert reports.verify(server.engine, run.id).ok

    # Study Root C-FIND (configured, or the archive's only model) cannot see removal from operational use.
    plain = Target(AET, "127.0.0.1", archive.port, Reconcile(method="query", repository_query=False))
    result = reconcile_job.run(server.settings, server.engine, plain, study_uids=studies, studies=server.readiness)
    assert result.status == COMPLETED, result.error
    assert findings(server.engine, result.run_uid) == drift
    with server.engine.connect() as conn:
        assert conn.execute(select(RUN.c.method).where(RUN.c.run_uid == result.run_uid)).scalar_one() == "query"
