"""The Inventory SOP instances wfm writes: every node meets the Inventory IOD's module tables (ours:
dicom3tools 2022 knows no Inventory IOD), dciodvfy finds nothing wrong but the IOD it does not know, the
tree splits as C.38.1.1.5 says, and completion is honest."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date, datetime

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from iod_tables import problems, subtree_uids
from workflow.dimse.server import IMPLEMENTATION_CLASS_UID
from workflow.inventory.produce import describe
from workflow.inventory.rules.iod import (InstanceFacts, NodeHeader, NodeRef, SeriesFacts, StudyFacts, node_dataset,
                                          part10, study_record)
from workflow.inventory.rules.tree import build_tree
from workflow.reconcile.rules.scope import HoldingsScope, scope_item

CT = "1.2.840.10008.5.1.4.1.1.2"


def facts(n: int) -> StudyFacts:
    series = tuple(SeriesFacts(f"1.2.3.{n}.{s}", "CT" if s else "", str(s + 1) if s else "",
                               tuple(InstanceFacts(CT, f"1.2.3.{n}.{s}.{i}", str(i + 1), "ONLINE" if i else "")
                                     for i in range(3)))
                   for s in range(2))
    return StudyFacts(f"1.2.3.{n}", study_date="20261120", patient_name="Müller^Jürgen", patient_id=f"P{n}",
                      series=series)


def build(studies: int, limit: int, fanout: int = 3, completion: str = "COMPLETE") -> tuple[str, dict[str, bytes]]:
    header = NodeHeader(datetime(2026, 12, 5, 10, 0, 0),
                        scope_item(HoldingsScope(since=date(2026, 11, 1), modalities=("CT", "MR"))),
                        "wfm inventory build", "test", completion, "WFM")
    stored: dict[str, bytes] = {}

    def put(records: list[Dataset], children: list[NodeRef]) -> NodeRef:
        uid = f"2.25.{len(stored) + 1}"
        ds = node_dataset(uid, header, records, children, datetime(2026, 12, 5, 10, 5))
        stored[uid] = part10(ds)
        return NodeRef(uid, int(ds.TotalNumberOfStudyRecords), children)

    records = (study_record(facts(n), "ORTHANC", datetime(2026, 12, 5, 10, 1)) for n in range(studies))
    return build_tree(records, limit, fanout, put).uid, stored


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def test_every_node_meets_the_module_tables():
    root, stored = build(7, 2)
    for uid, data in stored.items():
        ds = read(data)
        assert problems(ds) == [], uid
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID  # the DICOM face's own
    leaf = read(stored["2.25.1"])
    record = leaf.InventoriedStudiesSequence[0]
    assert record.RetrieveAETitle == "ORTHANC" and record.PatientName == "Müller^Jürgen"
    assert record.NumberOfStudyRelatedInstances == 6 and record.ModalitiesInStudy == "CT"
    assert record.InventoriedSeriesSequence[0].Modality == "OT"  # the archive did not say: Type 1 needs one
    assert record.InstanceAvailability == "ONLINE"


def test_the_checker_finds_what_is_wrong():
    _, stored = build(1, 5)
    ds = read(next(iter(stored.values())))
    del ds.InventoriedStudiesSequence[0].InventoriedSeriesSequence[0].InventoriedInstancesSequence[0].SOPClassUID
    ds.InventoryLevel = "PATIENT"
    ds.PatientID = "not here"
    found = problems(ds)
    assert any("SOPClassUID: Type 1, absent" in p for p in found)
    assert any(p.startswith("InventoryLevel: 'PATIENT'") for p in found)
    assert "PatientID: not in the Inventory IOD" in found


def test_the_tree_splits_and_every_node_lists_its_subtree():
    root, stored = build(7, 2, fanout=3)
    nodes = {uid: read(data) for uid, data in stored.items()}
    # 4 leaves (2+2+2+1 records), then index nodes of 3 children: one over leaves 1-3, leaf 4 moves up.
    assert len(nodes) == 6
    top = nodes[root]
    assert top.TotalNumberOfStudyRecords == 7 and top.NumberOfStudyRecordsInInstance == 0
    assert subtree_uids(top) == set(nodes) - {root}
    for uid, ds in nodes.items():
        own = len(ds.InventoriedStudiesSequence)
        assert ds.NumberOfStudyRecordsInInstance == own
        below = [nodes[ref.ReferencedSOPInstanceUID] for ref in ds.IncorporatedInventoryInstanceSequence]
        assert ds.TotalNumberOfStudyRecords == own + sum(int(c.TotalNumberOfStudyRecords) for c in below)
        assert (ds.ContentDate, ds.ContentTime, ds.InventoryLevel) == ("20261205", "100000.000000", "INSTANCE")
        assert len(ds.ScopeOfInventorySequence) == 1
    listed = [r.StudyInstanceUID for ds in nodes.values() for r in ds.InventoriedStudiesSequence]
    assert sorted(listed) == sorted(f"1.2.3.{n}" for n in range(7))


def test_an_empty_archive_is_one_empty_node():
    root, stored = build(0, 2)
    ds = read(stored[root])
    assert len(stored) == 1 and ds.TotalNumberOfStudyRecords == 0 and problems(ds) == []


def test_completion_says_what_could_not_be_listed():
    assert describe("ORTHANC", "Study Root C-FIND", []) == ("COMPLETE",
                                                            "Holdings of ORTHANC as listed by Study Root C-FIND.")
    failed = [(f"1.2.{n}", "C-FIND status 0xC000") for n in range(25)]
    completion, text = describe("ORTHANC", "Study Root C-FIND", failed)
    assert completion == "PARTIAL"
    assert "25 studies in scope could not be listed" in text and "1.2.19 ..." in text and "1.2.20" not in text
    with pytest.raises(ValueError):
        node_dataset("2.25.1", NodeHeader(datetime.now(), None, "", "", "DONE"), [], [], datetime.now())


def test_dciodvfy_finds_nothing_wrong_but_the_iod_it_does_not_know(tmp_path):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    root, stored = build(3, 2)
    for uid, data in stored.items():
        path = tmp_path / f"{uid}.dcm"
        path.write_bytes(data)
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        # dicom3tools without the Inventory IOD says only that; one that knows it must find no error at all.
        assert errors in ([], ["Error - Information Object Not found"]), errors
        warnings = [line for line in (result.stdout + result.stderr).splitlines()
                    if "Warning" in line and "Unrecognized tag" not in line and "<UV>" not in line
                    and "unsupported tag" not in line and "DICOMDIR" not in line]
        assert warnings == [], warnings
