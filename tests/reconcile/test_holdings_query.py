"""The Study Root C-FIND holdings client and the archive probe, against a real Orthanc (loaded with
dcmtk storescu) and, for what Orthanc cannot show (Inventory, failures, timeouts, streaming), a tiny
pynetdicom SCP. Everything on 127.0.0.1."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import date

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_FIND

from testkit.orthanc import CT_IMAGE, SECONDARY_CAPTURE, OrthancServer, SeriesSpec, StudySpec, free_port, \
    require_orthanc, write_instances
from workflow.reconcile.dimse.archive_probe import probe
from workflow.reconcile.dimse.holdings_query import SeriesCount, StudyRootHoldings
from workflow.reconcile.dimse.peer import ArchiveError
from workflow.reconcile.dimse.sop_classes import INVENTORY_FIND, STUDY_ROOT_FIND
from workflow.reconcile.rules.scope import HoldingsScope

pytestmark = pytest.mark.slow

AET = "ARCHIVE"
HOST = "127.0.0.1"


def make_studies() -> list[StudySpec]:
    return [
        StudySpec("P1", date(2020, 1, 2), [SeriesSpec("CT", 3), SeriesSpec("SR", 1)]),
        StudySpec("P2", date(2022, 5, 6), [SeriesSpec("MR", 2)]),
        StudySpec("P3", date(2024, 7, 8), [SeriesSpec("CT", 2), SeriesSpec("MR", 2), SeriesSpec("OT", 1)]),
    ]


@contextmanager
def loaded_orthanc(tmp_path, studies):
    require_orthanc()
    write_instances(tmp_path / "dicom", studies)
    with OrthancServer(aet=AET) as orthanc:
        orthanc.load(tmp_path / "dicom")
        assert orthanc.instance_count() == sum(s.instance_count for s in studies)
        yield orthanc


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One Orthanc for the read-only tests of this module."""
    studies = make_studies()
    with loaded_orthanc(tmp_path_factory.mktemp("orthanc"), studies) as orthanc:
        yield orthanc, studies


def holdings(orthanc: OrthancServer, **kw) -> StudyRootHoldings:
    return StudyRootHoldings("WFM", orthanc.aet, HOST, orthanc.dicom_port, timeout=5, **kw)


def expected_instances(study: StudySpec) -> set[tuple[str, str, str, str]]:
    return {(study.uid, series.uid, sop, CT_IMAGE if series.modality == "CT" else SECONDARY_CAPTURE)
            for series in study.series for sop in series.sop_uids}


# -- streaming what Orthanc holds ------------------------------------------------------------

def test_studies_series_and_instances_match_what_was_loaded(loaded):
    orthanc, studies = loaded
    with holdings(orthanc) as archive:
        got = {(s.study_uid, s.series_count, s.instance_count) for s in archive.studies()}
        assert got == {(s.uid, len(s.series), s.instance_count) for s in studies}
        for study in studies:
            assert set(archive.series(study.uid)) == {
                SeriesCount(series.uid, series.modality, series.instances) for series in study.series}
            records = list(archive.instances(study.uid))
            assert len(records) == study.instance_count
            assert {(h.study_uid, h.series_uid, h.sop_uid, h.sop_class_uid) for h in records} \
                == expected_instances(study)
            # Orthanc adds its own AET as Retrieve AE Title; it has no Instance Availability or URL.
            assert {(h.retrieve_ae, h.availability, h.retrieve_url, h.removed) for h in records} \
                == {(AET, "", "", False)}
            # Strict hierarchical form: one series at a time.
            series = study.series[0]
            assert {h.sop_uid for h in archive.instances(study.uid, series.uid)} == set(series.sop_uids)


def test_unknown_study_yields_nothing(loaded):
    orthanc, _ = loaded
    with holdings(orthanc) as archive:
        assert list(archive.instances("1.2.3.4.5.6.7.8.9")) == []
        assert list(archive.series("1.2.3.4.5.6.7.8.9")) == []


@pytest.mark.parametrize("multi_valued", [False, True])
def test_scopes(loaded, multi_valued):
    orthanc, (s1, s2, s3) = loaded

    def uids(**scope) -> list[str]:
        return sorted(s.study_uid for s in archive.studies(HoldingsScope(**scope)))

    with holdings(orthanc, multi_valued_modalities=multi_valued, uid_batch=2) as archive:
        assert uids() == sorted([s1.uid, s2.uid, s3.uid])
        assert uids(since=date(2022, 5, 6)) == sorted([s2.uid, s3.uid])
        assert uids(since=date(2030, 1, 1)) == []
        # A study with both CT and MR is reported once.
        assert uids(modalities=["CT", "MR"]) == sorted([s1.uid, s2.uid, s3.uid])
        assert uids(modalities=["MR", "SR"]) == sorted([s1.uid, s2.uid, s3.uid])
        assert uids(modalities=["ot"]) == [s3.uid]
        assert uids(modalities=["CT"], since=date(2021, 1, 1)) == [s3.uid]
        # Three UIDs in batches of two.
        assert uids(study_uids=[s1.uid, s3.uid, "1.2.3.4.5"]) == sorted([s1.uid, s3.uid])
        assert uids(study_uids=[s1.uid, s2.uid, s3.uid], modalities=["MR"]) == sorted([s2.uid, s3.uid])


def test_an_abandoned_stream_does_not_disturb_the_next_query(loaded):
    orthanc, (s1, s2, _) = loaded
    with holdings(orthanc) as archive:
        for _ in archive.instances(s1.uid):
            break
        assert {h.sop_uid for h in archive.instances(s2.uid)} == set(s2.series[0].sop_uids)


def test_many_queries_in_a_row_lose_no_response(loaded):
    # pynetdicom's reactor used to take ~0.3% of responses on back-to-back queries (see
    # holdings_query): each loss would have been an instance reported missing.
    orthanc, studies = loaded
    expected = [set(s.uid for s in study.series) for study in studies]
    with holdings(orthanc) as archive:
        for i in range(300):
            study = studies[i % 3]
            assert {s.series_uid for s in archive.series(study.uid)} == expected[i % 3]


def test_probe_finds_only_study_root_find_on_orthanc(loaded):
    orthanc, _ = loaded
    assert probe("WFM", orthanc.aet, HOST, orthanc.dicom_port) == {STUDY_ROOT_FIND}


# -- a changing archive (its own Orthanc) ------------------------------------------------------

def test_a_deleted_instance_disappears_and_counts_change(tmp_path):
    studies = make_studies()
    study = studies[2]
    gone = study.series[0].sop_uids[0]
    with loaded_orthanc(tmp_path, studies) as orthanc, holdings(orthanc) as archive:
        orthanc.delete_instance(gone)
        assert orthanc.instance_count() == sum(s.instance_count for s in studies) - 1
        assert {h.sop_uid for h in archive.instances(study.uid)} \
            == {sop for series in study.series for sop in series.sop_uids} - {gone}
        [count] = archive.studies(HoldingsScope(study_uids=[study.uid]))
        assert (count.series_count, count.instance_count) == (3, study.instance_count - 1)
        assert {(s.series_uid, s.instance_count) for s in archive.series(study.uid)} \
            == {(series.uid, series.instances - (series is study.series[0])) for series in study.series}


def test_archive_stopped_between_calls_raises_archive_error(tmp_path):
    studies = make_studies()
    with loaded_orthanc(tmp_path, studies) as orthanc, holdings(orthanc) as archive:
        assert len(list(archive.studies())) == 3
        orthanc.stop()
        with pytest.raises(ArchiveError) as raised:
            list(archive.instances(studies[0].uid))
        assert raised.value.study_uid == studies[0].uid


def test_archive_not_listening_raises_archive_error():
    port = free_port()
    with pytest.raises(ArchiveError, match="not established"):
        with StudyRootHoldings("WFM", AET, HOST, port, timeout=2):
            pass
    with pytest.raises(ArchiveError):
        probe("WFM", AET, HOST, port, timeout=2)


# -- a tiny pynetdicom SCP: Inventory, failures, timeouts, streaming ---------------------------

class TinyArchive:
    """Accepts Inventory FIND and Study Root FIND; C-FIND answers come from `self.answer(identifier)`,
    a generator of (status, identifier) pairs. One per module (each shutdown costs ~0.5 s)."""

    def __init__(self):
        ae = AE(ae_title="TINY")
        ae.add_supported_context(INVENTORY_FIND)
        ae.add_supported_context(STUDY_ROOT_FIND)
        handlers = [(evt.EVT_C_FIND, lambda event: self.answer(event.identifier))]
        self.server = ae.start_server((HOST, 0), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]
        self.reset()

    def reset(self):
        self.answer = lambda identifier: iter([(0x0000, None)])
        self.release = threading.Event()  # for answers that wait on the test

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def tiny_server():
    archive = TinyArchive()
    yield archive
    archive.close()


@pytest.fixture
def tiny(tiny_server):
    tiny_server.reset()
    yield tiny_server
    tiny_server.release.set()  # frees an answer still waiting


def match(**values) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_probe_detects_inventory_find(tiny):
    assert probe("WFM", "TINY", HOST, tiny.port) == {INVENTORY_FIND, STUDY_ROOT_FIND}


def test_matches_are_streamed_as_they_arrive(tiny):
    def answer(identifier):
        yield 0xFF00, match(SeriesInstanceUID="1.1", SOPInstanceUID="1.1.1", SOPClassUID=CT_IMAGE,
                            InstanceAvailability="NEARLINE", RetrieveAETitle=["A", "B"],
                            RetrieveURL="http://x/1")
        # The second match only comes once the client has handed out the first.
        assert tiny.release.wait(5)
        yield 0xFF00, match(SeriesInstanceUID="1.1", SOPInstanceUID="1.1.2")
        yield 0x0000, None

    tiny.answer = answer
    with StudyRootHoldings("WFM", "TINY", HOST, tiny.port, timeout=10) as archive:
        stream = archive.instances("1")
        first = next(stream)
        assert (first.availability, first.retrieve_ae, first.retrieve_url) == ("NEARLINE", "A\\B", "http://x/1")
        tiny.release.set()
        assert [h.sop_uid for h in stream] == ["1.1.2"]


@pytest.mark.parametrize("status", [0xC001, 0xA700, 0xFE00])
def test_failure_status_raises_archive_error_and_the_next_query_works(tiny, status):
    def failing(identifier):
        yield 0xFF00, match(SeriesInstanceUID="1.1", SOPInstanceUID="1.1.1")
        yield status, None

    tiny.answer = failing
    with StudyRootHoldings("WFM", "TINY", HOST, tiny.port, timeout=5) as archive:
        with pytest.raises(ArchiveError, match=f"0x{status:04X}") as raised:
            list(archive.instances("1.2.3"))
        assert raised.value.study_uid == "1.2.3"
        tiny.answer = lambda identifier: iter([(0x0000, None)])
        assert list(archive.instances("1.2.3")) == []


def test_a_response_taken_by_the_reactor_fails_the_query(tiny):
    # Simulates the pynetdicom race: the reactor thread takes one response and drops it.
    def answer(identifier):
        stray = C_FIND()
        stray.MessageIDBeingRespondedTo = 1
        stray.Status = 0xFF00
        stray.AffectedSOPClassUID = STUDY_ROOT_FIND
        archive._assoc._serve_request(stray, 1)
        yield 0xFF00, match(SeriesInstanceUID="1.1", SOPInstanceUID="1.1.1")
        yield 0x0000, None

    tiny.answer = answer
    with StudyRootHoldings("WFM", "TINY", HOST, tiny.port, timeout=5) as archive:
        with pytest.raises(ArchiveError, match="lost locally"):
            list(archive.instances("1.2.3"))


def test_a_match_without_its_unique_key_raises_archive_error(tiny):
    tiny.answer = lambda identifier: iter([(0xFF00, match(SeriesInstanceUID="1.1")), (0x0000, None)])
    with StudyRootHoldings("WFM", "TINY", HOST, tiny.port, timeout=5) as archive:
        with pytest.raises(ArchiveError, match="without SOPInstanceUID"):
            list(archive.instances("1.2.3"))


def test_no_response_within_timeout_raises_archive_error_then_reassociates(tiny):
    def slow(identifier):
        tiny.release.wait(5)
        yield 0x0000, None

    tiny.answer = slow
    with StudyRootHoldings("WFM", "TINY", HOST, tiny.port, timeout=0.5) as archive:
        with pytest.raises(ArchiveError, match="no C-FIND response within 0.5 s"):
            list(archive.series("1.2.3"))
        tiny.release.set()
        tiny.answer = lambda identifier: iter([(0x0000, None)])
        assert list(archive.series("1.2.3")) == []
