"""`wfm inventory build` against Debian's Orthanc when things go wrong: Orthanc stopped mid-crawl keeps
what was listed, and the next build resumes with the studies not yet listed (and only those); a study
whose listing fails makes the inventory PARTIAL, naming it, never a silently short COMPLETE one."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from testkit.db import test_settings
from testkit.orthanc import OrthancServer, SeriesSpec, StudySpec, require_orthanc, write_instances
from workflow.inventory import store
from workflow.inventory.crawl import CrawlStopped
from workflow.inventory.job import Archive, build, study_root_lister
from workflow.inventory.tables import InventoryCrawlStudy, InventoryNode
from workflow.reconcile.dimse.peer import ArchiveError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    require_orthanc()
    studies = [StudySpec(f"RES{n}", date(2026, 11, 20), [SeriesSpec("CT", 2)]) for n in range(4)]
    folder = tmp_path_factory.mktemp("resume")
    write_instances(folder, studies)
    with OrthancServer(aet="RESUME") as server:
        server.load(folder)
        yield server, sorted(s.uid for s in studies)


def lister_for(server, settings, **wrap):
    lister, _ = study_root_lister(settings.ae_title, Archive("RESUME", "127.0.0.1", server.dicom_port), timeout=5)
    asked = []
    original = lister.contents

    def contents(study_uid):
        asked.append(study_uid)
        if "before" in wrap:
            wrap["before"](study_uid, len(asked))
        return original(study_uid)

    lister.contents = contents
    return lister, asked


def states(engine) -> dict[str, int]:
    S = InventoryCrawlStudy.__table__
    with engine.connect() as conn:
        return dict(conn.execute(select(S.c.state, func.count()).group_by(S.c.state)).all())


def test_orthanc_stopped_mid_crawl_then_the_crawl_resumes(orthanc, engine):
    server, uids = orthanc
    settings = test_settings("sqlite://")

    def stop_after_two(study_uid, n):
        if n == 3:
            server.stop()  # the archive goes away for real

    lister, asked = lister_for(server, settings, before=stop_after_two)
    with pytest.raises(CrawlStopped, match="while listing study"):
        build(settings, engine, Archive("RESUME", "127.0.0.1", server.dicom_port), lister=lister)
    assert states(engine) == {"DONE": 2, "PENDING": 2}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(InventoryNode.__table__)).scalar() == 0

    server.start()  # same storage, new ports
    lister, asked = lister_for(server, settings)
    built, resumed = build(settings, engine, Archive("RESUME", "127.0.0.1", server.dicom_port), lister=lister)
    assert resumed and asked == uids[2:]  # only what was not listed yet
    assert (built.completion, built.records) == ("COMPLETE", 4)
    [root] = store.roots(engine, "RESUME")
    assert root["sop_instance_uid"] == built.root_uid and root["total_records"] == 4


def test_a_study_that_cannot_be_listed_makes_the_inventory_partial(orthanc, engine):
    server, uids = orthanc
    settings = test_settings("sqlite://")
    broken = uids[1]

    def refuse(study_uid, n):
        if study_uid == broken:
            raise ArchiveError(f"RESUME: C-FIND status 0xC000 for {study_uid}", study_uid)

    lister, _ = lister_for(server, settings, before=refuse)
    built, resumed = build(settings, engine, Archive("RESUME", "127.0.0.1", server.dicom_port), days=None,
                           modalities=("CT",), lister=lister)
    assert not resumed  # another scope: a crawl of its own
    assert built.completion == "PARTIAL" and built.records == 3
    assert f"1 studies in scope could not be listed and are in no record: {broken}" in built.description
    [node] = [n for n in store.find(engine, store.Keys(sop_instance_uids=(built.root_uid,)))]
    assert node["completion"] == "PARTIAL" and broken in node["description"]


def test_the_newest_three_inventories_of_an_archive_are_kept(orthanc, engine):
    server, _ = orthanc
    settings = test_settings("sqlite://")
    for _ in range(3):
        lister, _ = lister_for(server, settings)
        built, _ = build(settings, engine, Archive("RESUME", "127.0.0.1", server.dicom_port, "RESUME_Q"),
                         lister=lister)
    roots = store.roots(engine, "RESUME")
    assert len(roots) == 3 and roots[0]["sop_instance_uid"] == built.root_uid
    assert states(engine) == {}  # the crawls' study rows went into their inventories
    import io

    from pydicom import dcmread
    ds = dcmread(io.BytesIO(store.data(engine, built.root_uid)))
    assert {r.RetrieveAETitle for r in ds.InventoriedStudiesSequence} == {"RESUME_Q"}  # as its IANs name it
