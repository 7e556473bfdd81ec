"""The reference archive (src/refarchive) over real associations on 127.0.0.1: storage and Study Root
C-FIND with fault injection, Inventory Creation with its event reports, Inventory FIND/GET/MOVE,
and the Inventory objects themselves decoded with pydicom."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import (InventoryCreation, InventoryFind, InventoryGet, InventoryMove, InventoryStorage,
                                  RepositoryQuery)
from testkit.refarchive import (
    STUDY_ROOT_FIND,
    action,
    check_tree,
    ct_instance,
    find,
    initiate,
    query,
    scu,
    uid_list_scope,
    wait_closed,
)

from refarchive import ReferenceArchive, Scope
from refarchive.constants import STORAGE_MANAGEMENT_INSTANCE
from refarchive.nodelay import NoDelayAE


@pytest.fixture(autouse=True)
def strict_pydicom():
    # An unknown keyword would silently not be sent; a test must fail instead.
    before = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.RAISE
    yield
    pydicom.config.settings.writing_validation_mode = before


ARCHIVE = dict(record_limit=3, fanout=2, status_minute=0.2)


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("archive_faults_reset")]


@pytest.fixture(scope="module")
def store_scp():
    """A plain pynetdicom Storage SCP: the C-MOVE destination."""
    received: dict[str, Dataset] = {}
    ae = NoDelayAE(ae_title="DEST")
    ae.add_supported_context(InventoryStorage, [ExplicitVRLittleEndian])

    def on_store(event):
        received[str(event.dataset.SOPInstanceUID)] = event.dataset
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield server.server_address[1], received
    server.shutdown()


def _stored_nodes(archive, root_uid: str) -> dict[str, Dataset]:
    return {n.sop_instance_uid: dcmread(io.BytesIO(archive.inventories.data(n.sop_instance_uid)))
            for n in archive.inventories.tree(root_uid)}


# -- holdings and Study Root C-FIND ----------------------------------------------------------------


def test_seed_makes_predictable_uids(archive):
    seeded = archive.holdings.seed(2, 2, 3)
    assert seeded.instance_count == 12
    assert seeded.instance_uid(1, 1, 2) == f"{seeded.root}.{seeded.first_study + 1}.2.3"
    held = archive.holdings.instance(seeded.instance_uid(1, 1, 2))
    assert held["study_uid"] == seeded.study_uid(1) and held["instance_number"] == 3
    assert archive.holdings.count(study=seeded.study_uid(0)) == 6
    again = archive.holdings.seed(1)
    assert again.first_study == seeded.first_study + 2  # numbering continues


def test_stored_instances_are_found_at_each_level_with_counts(archive):
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    with scu(archive.port) as peer:
        for k, (se, modality) in enumerate([(series[0], "CT")] * 3 + [(series[1], "SR")] * 2):
            ds = ct_instance(study, se, number=k + 1, modality=modality)
            assert peer.assoc.send_c_store(ds).Status == 0x0000
        studies, final = find(peer.assoc, query("STUDY", StudyInstanceUID=study, NumberOfStudyRelatedSeries=None,
                                                NumberOfStudyRelatedInstances=None, ModalitiesInStudy=None,
                                                PatientID=None, InstanceAvailability=None))
        assert final == 0x0000 and len(studies) == 1
        found = studies[0]
        assert (found.NumberOfStudyRelatedSeries, found.NumberOfStudyRelatedInstances) == (2, 5)
        assert list(found.ModalitiesInStudy) == ["CT", "SR"]
        assert found.PatientID == "PID1" and found.InstanceAvailability == "ONLINE"
        assert found.RetrieveAETitle == "REFARCH"

        rows, _ = find(peer.assoc, query("SERIES", StudyInstanceUID=study, SeriesInstanceUID=None,
                                         NumberOfSeriesRelatedInstances=None, Modality=None))
        assert {(r.SeriesInstanceUID, r.Modality, r.NumberOfSeriesRelatedInstances) for r in rows} == {
            (series[0], "CT", 3), (series[1], "SR", 2)}

        images, _ = find(peer.assoc, query("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series[0],
                                           SOPInstanceUID=None, SOPClassUID=None, InstanceNumber=None))
        assert sorted(i.InstanceNumber for i in images) == [1, 2, 3]
        assert all(i.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" for i in images)


def test_find_matching_keys(archive):
    seeded = archive.holdings.seed(4, 1, 2, modality="MR")
    uids = seeded.study_uids
    with scu(archive.port) as peer:
        by_list, _ = find(peer.assoc, query("STUDY", StudyInstanceUID=uids[1:3]))
        assert [s.StudyInstanceUID for s in by_list] == sorted(uids[1:3])
        number = seeded.first_study + 2
        by_patient, _ = find(peer.assoc, query("STUDY", PatientID=f"PAT{number:07d}", StudyInstanceUID=None))
        assert [s.StudyInstanceUID for s in by_patient] == [uids[2]]
        by_wildcard, _ = find(peer.assoc, query("STUDY", AccessionNumber=f"ACC{number:07d}"[:-1] + "?",
                                                StudyInstanceUID=None, ModalitiesInStudy="MR"))
        assert uids[2] in {s.StudyInstanceUID for s in by_wildcard}
        held = archive.holdings.instance(seeded.instance_uid(0))
        by_date, _ = find(peer.assoc, query("STUDY", StudyDate=f"{held['study_date']}-{held['study_date']}",
                                            StudyInstanceUID=uids))
        assert [s.StudyInstanceUID for s in by_date] == [uids[0]]
        bad, final = find(peer.assoc, query("PATIENT", PatientID=None))
        assert bad == [] and final == 0xA900


def test_faults_show_in_query_results(archive):
    seeded = archive.holdings.seed(3, 2, 3)
    h = archive.holdings
    s0, s1, s2 = seeded.study_uids
    h.lose_instance(seeded.instance_uid(0, 0, 0))
    h.set_availability("OFFLINE", series=seeded.series_uid(1, 1))
    h.mark_removed(study=s2)
    h.set_retrieve(ae_title="ELSEWHERE", instance=seeded.instance_uid(1, 0, 0))
    extra = h.add_unannounced(study_uid=s1, series_uid=seeded.series_uid(1, 0))
    h.lose_series(seeded.series_uid(0, 1))
    with scu(archive.port) as peer:
        studies, _ = find(peer.assoc, query("STUDY", StudyInstanceUID=[s0, s1, s2], NumberOfStudyRelatedInstances=None,
                                            NumberOfStudyRelatedSeries=None, InstanceAvailability=None,
                                            RemovedFromOperationalUse=None))
        got = {s.StudyInstanceUID: s for s in studies}
        assert (got[s0].NumberOfStudyRelatedSeries, got[s0].NumberOfStudyRelatedInstances) == (1, 2)
        assert got[s1].NumberOfStudyRelatedInstances == 7
        assert got[s1].InstanceAvailability == "OFFLINE"  # the least available member
        assert sorted(got[s1].RetrieveAETitle) == ["ELSEWHERE", "REFARCH"]
        assert got[s2].RemovedFromOperationalUse == "Y" and got[s1].RemovedFromOperationalUse == "N"
        images, _ = find(peer.assoc, query("IMAGE", StudyInstanceUID=s1, SOPInstanceUID=None,
                                           InstanceAvailability=None))
        by_uid = {i.SOPInstanceUID: i for i in images}
        assert extra.sop_instance_uid in by_uid
        assert by_uid[seeded.instance_uid(1, 0, 0)].RetrieveAETitle == "ELSEWHERE"
        assert by_uid[seeded.instance_uid(1, 1, 0)].InstanceAvailability == "OFFLINE"
    h.lose_study(s0)
    assert h.count(study=s0) == 0 and s0 not in h.study_uids()


def test_abort_after_n_find_responses(archive):
    seeded = archive.holdings.seed(5)
    archive.abort_after(2)
    with scu(archive.port) as peer:
        responses = list(peer.assoc.send_c_find(query("STUDY", StudyInstanceUID=seeded.study_uids), STUDY_ROOT_FIND))
        pending = [r for r in responses if r[0] and r[0].get("Status") == 0xFF00]
        assert len(pending) == 2
        wait_closed(peer.assoc)
        assert peer.assoc.is_aborted
    assert not archive.faults.armed


def _pages(assoc, level: str, page: int, **keys) -> tuple[list[Dataset], list[int]]:
    """Every match of a Repository Query, `page` at a time, continuing after the last Record Key."""
    matches, finals, prior = [], [], None
    while True:
        ask = query(level, RecordKey=b"", MaximumNumberOfRecords=page, **keys)
        if prior is not None:
            ask.PriorRecordKey = prior
        got, final = find(assoc, ask, RepositoryQuery)
        matches += got
        finals.append(final)
        if final != 0xB001:
            return matches, finals
        prior = got[-1].RecordKey


def test_repository_query_pages_in_record_key_order_and_continues(archive):
    seeded = archive.holdings.seed(4, 2, 3)
    archive.holdings.mark_removed(series=seeded.series_uid(1, 1))
    with scu(archive.port) as peer:
        images, finals = _pages(peer.assoc, "IMAGE", 5, StudyInstanceUID=seeded.study_uids, SeriesInstanceUID=None,
                                SOPInstanceUID=None, RemovedFromOperationalUse=None)
        assert finals == [0xB001] * 4 + [0x0000]  # 24 matches: 4 full pages and the rest
        keys = [(i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID) for i in images]
        assert keys == sorted(keys) and len(set(keys)) == 24
        assert [bytes(i.RecordKey) for i in images] == sorted(bytes(i.RecordKey) for i in images)
        assert all("PriorRecordKey" not in i and "MaximumNumberOfRecords" not in i for i in images)
        removed = {i.SOPInstanceUID for i in images if i.RemovedFromOperationalUse == "Y"}
        assert removed == {seeded.instance_uid(1, 1, k) for k in range(3)}  # the series' removal is inherited
        studies, finals = _pages(peer.assoc, "STUDY", 3, StudyInstanceUID=seeded.study_uids)
        assert [s.StudyInstanceUID for s in studies] == sorted(seeded.study_uids) and finals == [0xB001, 0x0000]
        bad, final = find(peer.assoc, query("IMAGE", StudyInstanceUID=seeded.study_uid(0), SOPInstanceUID=None,
                                            PriorRecordKey=studies[0].RecordKey), RepositoryQuery)
        assert bad == [] and final == 0xA710  # a STUDY level key cannot continue an IMAGE level query


def test_repository_query_archive_limit_and_study_root_unchanged(archive):
    seeded = archive.holdings.seed(3)
    archive._repository.page_limit = 2
    try:
        with scu(archive.port) as peer:
            unlimited, finals = _pages(peer.assoc, "STUDY", 0, StudyInstanceUID=seeded.study_uids)
            assert finals == [0xB001, 0x0000] and len(unlimited) == 3  # the archive's own limit
            plain, final = find(peer.assoc, query("STUDY", StudyInstanceUID=seeded.study_uids))
            assert final == 0x0000 and len(plain) == 3 and "RecordKey" not in plain[0]
    finally:
        archive._repository.page_limit = 10_000


# -- Inventory Creation, FIND, GET, MOVE -----------------------------------------------------------


def test_creation_reports_events_and_the_inventory_can_be_found_and_retrieved(archive):
    seeded = archive.holdings.seed(7, 2, 3)
    archive.holdings.mark_removed(series=seeded.series_uid(2, 1))
    archive.holdings.set_availability("NEARLINE", instance=seeded.instance_uid(3, 0, 1))
    with scu(archive.port) as peer:
        status, tuid = initiate(peer.assoc, "INSTANCE", scope=uid_list_scope(seeded.study_uids))
        assert status.Status == 0x0000
        events = peer.until_terminated()
        assert [(e[0], e[1].TransactionStatus) for e in events] == [(12, "PROCESSING"), (11, "COMPLETE")]
        assert all(e[2] == InventoryCreation and e[3] == STORAGE_MANAGEMENT_INSTANCE for e in events)
        done = events[-1][1]
        assert done.TransactionUID == tuid and done.TotalNumberOfStudyRecords == 7
        assert done.ReferencedSOPClassUID == InventoryStorage and done.RetrieveAETitle == "REFARCH"

        found, final = find(peer.assoc, query("", TransactionUID=tuid, SOPInstanceUID=None, InventoryLevel=None,
                                              InventoryCompletionStatus=None, TotalNumberOfStudyRecords=None,
                                              ContentDate=None, ScopeOfInventorySequence=None),
                            InventoryFind)
        assert final == 0x0000
        assert done.ReferencedSOPInstanceUID in {f.SOPInstanceUID for f in found}
        assert len(found) > 1  # 7 records, 3 per instance: a tree
        assert {(f.InventoryLevel, f.InventoryCompletionStatus, f.RetrieveAETitle) for f in found} == {
            ("INSTANCE", "COMPLETE", "REFARCH")}
        assert all(len(f.ScopeOfInventorySequence[0].ListOfUIDMatchingSequence) == 7 for f in found)

        ident = Dataset()
        ident.SOPInstanceUID = [f.SOPInstanceUID for f in found]
        results = list(peer.assoc.send_c_get(ident, InventoryGet))
        assert results[-1][0].Status == 0x0000 and results[-1][0].NumberOfCompletedSuboperations == len(found)
        nodes = dict(peer.stored)

    records = check_tree(nodes, done.ReferencedSOPInstanceUID)
    assert sorted(r.StudyInstanceUID for r in records) == sorted(seeded.study_uids)
    expected = {seeded.instance_uid(k, s, i) for k in range(7) for s in range(2) for i in range(3)}
    inventoried = {}
    for record in records:
        assert record.NumberOfStudyRelatedSeries == 2 and record.NumberOfStudyRelatedInstances == 6
        assert record.RetrieveAETitle == "REFARCH" and record.ItemInventoryDateTime
        for series in record.InventoriedSeriesSequence:
            for inst in series.InventoriedInstancesSequence:
                inventoried[inst.SOPInstanceUID] = (record, series, inst)
    assert set(inventoried) == expected
    record, series, _ = inventoried[seeded.instance_uid(2, 1, 0)]
    assert series.RemovedFromOperationalUse == "Y"
    assert series.ReasonForRemovalCodeSequence[0].CodeValue == "113001"
    assert "RemovedFromOperationalUse" not in record
    record, series, inst = inventoried[seeded.instance_uid(3, 0, 1)]
    assert (inst.InstanceAvailability, series.InstanceAvailability, record.InstanceAvailability) == ("NEARLINE",) * 3


def test_unsupported_scope_keys_answer_b010_and_are_ignored(archive):
    seeded = archive.holdings.seed(2)
    scope = uid_list_scope(seeded.study_uids)
    scope[0].ExtendedMatchingMechanisms = "RELATIONAL"
    scope[0].QueryRetrieveLevel = "SERIES"
    general = Dataset()
    general.Modality = "CT"
    scope[0].GeneralMatchingSequence = [general]
    with scu(archive.port) as peer:
        status, tuid = initiate(peer.assoc, "STUDY", scope=scope)
        assert status.Status == 0xB010
        assert {int(t) for t in status.AttributeIdentifierList} == {0x0008040F, 0x00080052, 0x00080060}
        done = peer.until_terminated()[-1][1]
        assert done.TransactionStatus == "COMPLETE" and done.TotalNumberOfStudyRecords == 2


@pytest.mark.parametrize("info, action_type, expected", [
    ({"InventoryLevel": "STUDY"}, 11, 0x0110),  # no Transaction UID
    ({"TransactionUID": "1.2.3.4", "InventoryLevel": "PATIENT"}, 11, 0x0110),
    ({"TransactionUID": "1.2.3.5"}, 12, 0x0110),  # unknown transaction
    ({"TransactionUID": "1.2.3.6"}, 99, 0x0123),
])
def test_creation_refusals(archive, info, action_type, expected):
    ds = Dataset()
    for keyword, value in info.items():
        setattr(ds, keyword, value)
    with scu(archive.port) as peer:
        status, _ = peer.assoc.send_n_action(ds, action_type, InventoryCreation, STORAGE_MANAGEMENT_INSTANCE)
        assert status.Status == expected and status.ErrorComment


def test_duplicate_transaction_uid_is_refused(archive):
    seeded = archive.holdings.seed(1)
    with scu(archive.port) as peer:
        status, tuid = initiate(peer.assoc, scope=uid_list_scope(seeded.study_uids))
        assert status.Status == 0x0000
        peer.until_terminated()
        again, _ = initiate(peer.assoc, transaction_uid=tuid)
        assert again.Status == 0x0110


def test_partial_production_keeps_a_partial_inventory(archive):
    seeded = archive.holdings.seed(6)
    archive.faults.creation_partial_after = 4
    with scu(archive.port) as peer:
        _, tuid = initiate(peer.assoc, "SERIES", scope=uid_list_scope(seeded.study_uids))
        done = peer.until_terminated()[-1]
    assert done[0] == 11 and done[1].TransactionStatus == "FAILURE" and done[1].TotalNumberOfStudyRecords == 4
    nodes = _stored_nodes(archive, done[1].ReferencedSOPInstanceUID)
    records = check_tree(nodes, done[1].ReferencedSOPInstanceUID)
    assert {n.InventoryCompletionStatus for n in nodes.values()} == {"PARTIAL"}
    assert sorted(r.StudyInstanceUID for r in records) == sorted(seeded.study_uids)[:4]


def test_failed_production_reports_event_13_and_keeps_nothing(archive):
    seeded = archive.holdings.seed(5)
    archive.faults.creation_fail_after = 4
    with scu(archive.port) as peer:
        _, tuid = initiate(peer.assoc, scope=uid_list_scope(seeded.study_uids))
        done = peer.until_terminated()[-1]
        assert (done[0], done[1].TransactionStatus) == (13, "FAILURE") and done[1].TransactionStatusComment
        found, _ = find(peer.assoc, query("", TransactionUID=tuid, SOPInstanceUID=None), InventoryFind)
        assert found == []


@pytest.mark.parametrize("retain", ["Y", "N"])
def test_cancel_with_and_without_retaining_instances(archive, retain):
    seeded = archive.holdings.seed(40)
    archive.faults.creation_study_delay = 0.02
    with scu(archive.port) as peer:
        _, tuid = initiate(peer.assoc, scope=uid_list_scope(seeded.study_uids))
        assert peer.next_event()[1].TransactionStatus == "PROCESSING"
        assert action(peer.assoc, 13, tuid, RetainInstances=retain).Status == 0x0000
        done = peer.until_terminated()[-1]
        assert done[1].TransactionStatus == "CANCELED"
        found, _ = find(peer.assoc, query("", TransactionUID=tuid, SOPInstanceUID=None,
                                          InventoryCompletionStatus=None), InventoryFind)
    if retain == "Y":
        assert done[0] == 11 and 0 < done[1].TotalNumberOfStudyRecords < 40
        assert found and {f.InventoryCompletionStatus for f in found} == {"CANCELED"}
    else:
        assert done[0] == 13 and found == []


def test_pause_resume_request_status_and_periodic_status(archive):
    seeded = archive.holdings.seed(30)
    archive.faults.creation_study_delay = 0.02
    with scu(archive.port) as peer:
        _, tuid = initiate(peer.assoc, scope=uid_list_scope(seeded.study_uids))
        assert peer.next_event()[1].TransactionStatus == "PROCESSING"
        assert action(peer.assoc, 14, tuid).Status == 0x0000
        paused = peer.next_event()[1]
        assert paused.TransactionStatus == "PAUSED"
        assert action(peer.assoc, 12, tuid, RequestedStatusInterval=1).Status == 0x0000
        asked = peer.next_event()[1]
        assert asked.TransactionStatus == "PAUSED" and asked.TotalNumberOfStudyRecords == paused.TotalNumberOfStudyRecords
        assert action(peer.assoc, 15, tuid).Status == 0x0000
        events = peer.until_terminated()
    statuses = [e[1].TransactionStatus for e in events]
    assert statuses[0] == "PROCESSING" and statuses[-1] == "COMPLETE"
    assert statuses.count("PROCESSING") >= 2  # resumed, then at least one periodic report (1 "minute" = 0.2 s)
    assert events[-1][1].TotalNumberOfStudyRecords == 30


def test_inventory_move_to_a_storage_scp(archive, store_scp):
    port, received = store_scp
    archive.move_destinations["DEST"] = ("127.0.0.1", port)
    seeded = archive.holdings.seed(4)
    built = archive.build_inventory("STUDY", scope=Scope(study_uids=seeded.study_uids), record_limit=2)
    with scu(archive.port) as peer:
        ident = Dataset()
        ident.SOPInstanceUID = built.instance_uids
        results = list(peer.assoc.send_c_move(ident, "DEST", InventoryMove))
        assert results[-1][0].Status == 0x0000
        assert results[-1][0].NumberOfCompletedSuboperations == len(built.instance_uids) == 3
        unknown = list(peer.assoc.send_c_move(ident, "NOWHERE", InventoryMove))
        assert unknown[-1][0].Status == 0xA801
    records = check_tree({u: received[u] for u in built.instance_uids}, built.root_uid)
    assert sorted(r.StudyInstanceUID for r in records) == sorted(seeded.study_uids)


def test_retrieve_refusals_and_missing_uids(archive):
    built = archive.build_inventory("STUDY", scope=Scope(study_uids=archive.holdings.seed(1).study_uids))
    with scu(archive.port) as peer:
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.SOPInstanceUID = built.root_uid
        assert list(peer.assoc.send_c_get(ident, InventoryGet))[-1][0].Status == 0xA900
        ident = Dataset()
        ident.SOPInstanceUID = [built.root_uid, "1.2.3.999"]
        final, failed = list(peer.assoc.send_c_get(ident, InventoryGet))[-1]
        assert final.Status == 0xB000 and failed.FailedSOPInstanceUIDList == "1.2.3.999"
        assert built.root_uid in peer.stored


def test_abort_mid_inventory_get(archive):
    built = archive.build_inventory("STUDY", scope=Scope(study_uids=archive.holdings.seed(5).study_uids),
                                    record_limit=1, fanout=10)
    archive.abort_after(2)
    with scu(archive.port) as peer:
        ident = Dataset()
        ident.SOPInstanceUID = built.instance_uids
        list(peer.assoc.send_c_get(ident, InventoryGet))
        wait_closed(peer.assoc)
        assert peer.assoc.is_aborted and len(peer.stored) == 2


def test_stored_inventory_instance_is_kept_whole_and_findable(archive):
    built = archive.build_inventory("SERIES", scope=Scope(study_uids=archive.holdings.seed(2).study_uids))
    ds = archive.inventories.dataset(built.root_uid)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.TransactionUID = generate_uid()
    with scu(archive.port) as peer:
        assert peer.assoc.send_c_store(ds).Status == 0x0000
        found, _ = find(peer.assoc, query("", TransactionUID=ds.TransactionUID, SOPInstanceUID=None,
                                          TotalNumberOfStudyRecords=None), InventoryFind)
    assert [(f.SOPInstanceUID, f.TotalNumberOfStudyRecords) for f in found] == [(ds.SOPInstanceUID, 2)]
    assert dcmread(io.BytesIO(archive.inventories.data(ds.SOPInstanceUID))).InventoriedStudiesSequence


# -- inventories built without DIMSE ---------------------------------------------------------------


def test_prebuilt_split_tree_and_partial(archive):
    seeded = archive.holdings.seed(9, 1, 2)
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids), record_limit=2,
                                    fanout=2, transaction_uid=generate_uid(), description="nightly")
    nodes = _stored_nodes(archive, built.root_uid)
    assert len(nodes) == len(built.instance_uids) > 5  # 5 leaves under index nodes, 2 children each
    root = nodes[built.root_uid]
    assert root.NumberOfStudyRecordsInInstance == 0 and root.TotalNumberOfStudyRecords == 9
    assert any(item.get("IncorporatedInventoryInstanceSequence") for item in root.IncorporatedInventoryInstanceSequence)
    records = check_tree(nodes, built.root_uid)
    assert sum(r.NumberOfStudyRelatedInstances for r in records) == 18
    assert {(n.TransactionUID, n.InventoryInstanceDescription) for n in nodes.values()} == {
        (built.transaction_uid, "nightly")}

    partial = archive.build_inventory("STUDY", scope=Scope(study_uids=seeded.study_uids), completion="PARTIAL",
                                      max_studies=4)
    nodes = _stored_nodes(archive, partial.root_uid)
    assert partial.total_records == 4 and {n.InventoryCompletionStatus for n in nodes.values()} == {"PARTIAL"}


def test_inventory_bytes_reencode_identically_with_pydicom(archive):
    seeded = archive.holdings.seed(2, 2, 2)
    archive.holdings.mark_removed(instance=seeded.instance_uid(0, 1, 1))
    archive.holdings.set_retrieve(url="https://archive.example/studies", study=seeded.study_uid(1))
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=seeded.study_uids))
    raw = archive.inventories.data(built.root_uid)
    ds = dcmread(io.BytesIO(raw))
    parsed = [e for e in ds.iterall()]  # decodes every nested element
    assert len(parsed) > 50
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert dcmread(io.BytesIO(out.getvalue())) == dcmread(io.BytesIO(raw))
    studies = {r.StudyInstanceUID: r for r in ds.InventoriedStudiesSequence}
    assert studies[seeded.study_uid(1)].RetrieveURL == "https://archive.example/studies"
    removed = studies[seeded.study_uid(0)].InventoriedSeriesSequence[1].InventoriedInstancesSequence[1]
    assert removed.RemovedFromOperationalUse == "Y" and removed.ReasonForRemovalCodeSequence[0].CodeValue


def test_scope_round_trip():
    scope = Scope(study_uids=["1.2.3", "1.2.4"], study_date=("20240101", ""), modalities=["CT", "MR"],
                  patient_id="PAT*")
    parsed, unsupported = Scope.from_sequence(scope.to_sequence())
    assert unsupported == [] and parsed == scope
    assert Scope.from_sequence([Dataset()]) == (Scope(), [])


# -- lifecycle -------------------------------------------------------------------------------------


def test_stop_aborts_open_associations_and_production():
    with ReferenceArchive(ae_title="REFARCH") as other:
        seeded = other.holdings.seed(50)
        other.faults.creation_study_delay = 0.05
        with scu(other.port) as peer:
            _, tuid = initiate(peer.assoc, scope=uid_list_scope(seeded.study_uids))
            peer.next_event()
            started = time.monotonic()
            other.stop()
            assert time.monotonic() - started < 5
            assert not peer.assoc.is_established
        assert other.creation.transactions[tuid].status == "FAILURE"
        assert other.inventories.find() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_line_demo_runs_until_sigterm(tmp_path):
    port = _free_port()
    log = (tmp_path / "refarchive.log").open("w")  # a file, not a pipe nobody drains
    proc = subprocess.Popen([sys.executable, "-m", "refarchive", "--port", str(port), "--db", str(tmp_path / "a.db"),
                             "--seed-studies", "3", "--seed-series", "2", "--seed-instances", "2",
                             "--build-inventory", "SERIES"], stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with scu(port) as peer:
                    studies, _ = find(peer.assoc, query("STUDY", StudyInstanceUID=None,
                                                        NumberOfStudyRelatedInstances=None))
                    inventories, _ = find(peer.assoc, query("", SOPInstanceUID=None, InventoryLevel=None),
                                          InventoryFind)
                break
            except AssertionError:
                assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "refarchive.log").read_text()
                time.sleep(0.1)
        assert [s.NumberOfStudyRelatedInstances for s in studies] == [4, 4, 4]
        assert [i.InventoryLevel for i in inventories] == ["SERIES"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        log.close()
