"""Talking to the reference archive from tests: a pynetdicom SCU with every context it serves, the
event reports it sends back, and a checker for the Inventory trees it produces."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    InventoryCreation,
    InventoryFind,
    InventoryGet,
    InventoryMove,
    InventoryStorage,
    RepositoryQuery,
    StorageManagementInstance,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from refarchive.nodelay import NoDelayAE
from workflow.dimse.reactor import release

STUDY_ROOT_FIND = StudyRootQueryRetrieveInformationModelFind


@dataclass
class Peer:
    """One SCU association plus what the archive sent back on it."""

    assoc: object
    events: queue.Queue = field(default_factory=queue.Queue)  # (event type, info, affected class, instance)
    stored: dict[str, Dataset] = field(default_factory=dict)  # C-GET sub-operations, by SOP Instance UID

    def next_event(self, timeout: float = 10.0) -> tuple[int, Dataset, str, str]:
        return self.events.get(timeout=timeout)

    def until_terminated(self, timeout: float = 10.0) -> list[tuple[int, Dataset, str, str]]:
        """Events up to and including 11 or 13."""
        seen = []
        while True:
            seen.append(self.next_event(timeout))
            if seen[-1][0] in (11, 13):
                return seen


@contextmanager
def scu(port: int, calling_ae: str = "RECONCILER", called_ae: str = "REFARCH") -> Iterator[Peer]:
    ae = NoDelayAE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for uid in (Verification, STUDY_ROOT_FIND, RepositoryQuery, InventoryFind, InventoryGet, InventoryMove, InventoryCreation):
        ae.add_requested_context(uid)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(InventoryStorage, [ExplicitVRLittleEndian])
    peer = Peer(assoc=None)

    def on_event(event):
        req = event.request
        peer.events.put((event.event_type, event.event_information, str(req.AffectedSOPClassUID),
                         str(req.AffectedSOPInstanceUID)))
        return 0x0000, None

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        peer.stored[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    peer.assoc = ae.associate("127.0.0.1", port, ae_title=called_ae,
                              ext_neg=[build_role(InventoryStorage, scu_role=True, scp_role=True)],
                              evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event), (evt.EVT_C_STORE, on_store)])
    assert peer.assoc.is_established, "association with the reference archive refused"
    try:
        yield peer
    finally:
        release(peer.assoc)  # bounded: pynetdicom's release() can wait for ever on a reactor that has ended


def wait_closed(assoc, timeout: float = 5.0) -> None:
    """Until the association is no longer established (an abort is seen asynchronously)."""
    deadline = time.monotonic() + timeout
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.01)


def ct_instance(study_uid: str, series_uid: str, sop_uid: str | None = None, *, number: int = 1,
                modality: str = "CT", patient_id: str = "PID1", accession: str = "ACC1",
                study_date: str = "20240102") -> Dataset:
    """A small CT image (no pixel data: the archive keeps metadata only)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.InstanceNumber = number
    ds.SeriesNumber = 1
    ds.PatientID = patient_id
    ds.PatientName = "TEST^PATIENT"
    ds.AccessionNumber = accession
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def find(assoc, query: Dataset, model=STUDY_ROOT_FIND) -> tuple[list[Dataset], int]:
    """(matches, final status). The first status that is not Pending is final: pynetdicom 3.0 would
    wait for another response after a Repository Query's B001, which a conformant SCP never sends."""
    matches = []
    responses = assoc.send_c_find(query, model)
    for st, ident in responses:
        if st.get("Status") in (0xFF00, 0xFF01):
            matches.append(ident)
        else:
            responses.close()
            return matches, st.get("Status")
    return matches, None


def query(level: str, **keys) -> Dataset:
    """A C-FIND identifier: keys given as keyword=value; value None asks for the attribute."""
    ds = Dataset()
    if level:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def initiate(assoc, level: str = "STUDY", *, transaction_uid: str | None = None, scope: list[Dataset] | None = None,
             purpose: str | None = "test", interval: int | None = None) -> tuple[Dataset, str]:
    info = Dataset()
    info.TransactionUID = transaction_uid or generate_uid()
    info.InventoryLevel = level
    info.ScopeOfInventorySequence = scope or []
    if purpose is not None:
        info.InventoryPurpose = purpose
    if interval is not None:
        info.RequestedStatusInterval = interval
    status, _ = assoc.send_n_action(info, 11, InventoryCreation, StorageManagementInstance)
    return status, info.TransactionUID


def action(assoc, action_type: int, transaction_uid: str, **keys) -> Dataset:
    info = Dataset()
    info.TransactionUID = transaction_uid
    for keyword, value in keys.items():
        setattr(info, keyword, value)
    status, _ = assoc.send_n_action(info, action_type, InventoryCreation, StorageManagementInstance)
    return status


def uid_list_scope(study_uids: list[str]) -> list[Dataset]:
    """Scope of Inventory: these studies (List of UID Matching)."""
    item = Dataset()
    item.ListOfUIDMatchingSequence = []
    for uid in study_uids:
        one = Dataset()
        one.StudyInstanceUID = uid
        item.ListOfUIDMatchingSequence.append(one)
    return [item]


def references(seq) -> dict[str, list]:
    """Incorporated Inventory Instance Sequence as {uid: nested references}."""
    return {str(item.ReferencedSOPInstanceUID): references(item.get("IncorporatedInventoryInstanceSequence", []))
            for item in seq}


def check_tree(nodes: dict[str, Dataset], root_uid: str) -> list[Dataset]:
    """Check an Inventory tree (every node given, by SOP Instance UID) and return all its study
    records: one root; each node's (0008,0422) is exactly its subtree, nested the same way as in the
    child itself; record counts add up; one Inventory Level throughout."""
    root = nodes[root_uid]
    tree = references(root.IncorporatedInventoryInstanceSequence)

    def flatten(refs: dict) -> list[str]:
        return [u for uid, sub in refs.items() for u in [uid, *flatten(sub)]]

    assert sorted(flatten(tree)) == sorted(set(nodes) - {root_uid}), "the root must reference every other node once"
    records: list[Dataset] = []
    for uid, ds in nodes.items():
        assert str(ds.SOPClassUID) == str(InventoryStorage)
        assert ds.InventoryLevel == root.InventoryLevel
        assert ds.InventoryCompletionStatus == root.InventoryCompletionStatus
        own = references(ds.IncorporatedInventoryInstanceSequence)
        children_total = sum(nodes[child].TotalNumberOfStudyRecords for child in own)
        assert ds.NumberOfStudyRecordsInInstance == len(ds.InventoriedStudiesSequence)
        assert ds.TotalNumberOfStudyRecords == ds.NumberOfStudyRecordsInInstance + children_total
        for child, sub in own.items():
            assert sub == references(nodes[child].IncorporatedInventoryInstanceSequence)
        records.extend(ds.InventoriedStudiesSequence)
    assert len(records) == root.TotalNumberOfStudyRecords
    return records
