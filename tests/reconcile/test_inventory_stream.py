"""The streaming Inventory reader (workflow.reconcile.dimse.inventory_stream) against pydicom: inventories the
reference archive builds at STUDY / SERIES / INSTANCE level, re-encoded in Implicit and Explicit VR
Little Endian with defined and undefined lengths, edited to exercise every inheritance rule, and
random inventories compared with a naive pydicom walk of the same bytes."""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from refarchive import Scope
from workflow.reconcile.dimse.inventory_stream import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    AccessEndPoint,
    InventoryFormatError,
    open_inventory,
    parse,
)
from workflow.reconcile.rules.holdings import Holding

pytestmark = pytest.mark.slow

INVENTORY_STORAGE = "1.2.840.10008.5.1.4.1.1.201.1"
ENCODINGS = [(EXPLICIT_VR_LE, False), (EXPLICIT_VR_LE, True), (IMPLICIT_VR_LE, False), (IMPLICIT_VR_LE, True)]


# -- the reference: pydicom and the documented rules -----------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _end_point(seq) -> AccessEndPoint | None:
    if not seq:
        return None
    item = seq[0]
    return AccessEndPoint(_text(item.get("RetrieveAETitle")), _text(item.get("RetrieveURL")),
                          _text(item.get("StoredInstanceBaseURI")))


def _references(seq) -> list:
    return [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID),
             _end_point(i.get("InventoryAccessEndPointsSequence")),
             _references(i.get("IncorporatedInventoryInstanceSequence")))
            for i in seq or []]


def _int(value) -> int | None:
    return None if value is None or value == "" else int(value)


def naive(ds: Dataset) -> tuple[dict, list[dict], list[Holding]]:
    """(header, study records, holdings) as the module docstring defines them, read with pydicom."""
    header = {"sop_instance_uid": str(ds.SOPInstanceUID), "level": ds.InventoryLevel,
              "completion": ds.InventoryCompletionStatus, "transaction_uid": str(ds.get("TransactionUID", "")),
              "content_date": _text(ds.get("ContentDate")), "content_time": _text(ds.get("ContentTime")),
              "purpose": _text(ds.get("InventoryPurpose")),
              "description": _text(ds.get("InventoryInstanceDescription")),
              "records_in_instance": _int(ds.get("NumberOfStudyRecordsInInstance")),
              "total_records": _int(ds.get("TotalNumberOfStudyRecords")),
              "inventory_end_point": _end_point(ds.get("InventoryAccessEndPointsSequence")),
              "study_end_point": _end_point(ds.get("StudyAccessEndPointsSequence")),
              "incorporated": _references(ds.get("IncorporatedInventoryInstanceSequence"))}
    ep = header["study_end_point"]
    studies, holdings = [], []
    for study in ds.get("InventoriedStudiesSequence", []):
        s_removed = study.get("RemovedFromOperationalUse") == "Y"
        s_ae = _text(study.get("RetrieveAETitle")) or (ep.retrieve_ae if ep else "")
        s_url = _text(study.get("RetrieveURL")) or (ep.retrieve_url if ep else "")
        s_avail = _text(study.get("InstanceAvailability"))
        record = {"study_uid": str(study.StudyInstanceUID), "removed": s_removed, "retrieve_ae": s_ae,
                  "retrieve_url": s_url, "availability": s_avail,
                  "series_count": _int(study.get("NumberOfStudyRelatedSeries")),
                  "instance_count": _int(study.get("NumberOfStudyRelatedInstances")),
                  "modalities": tuple(_text(study.get("ModalitiesInStudy")).split("\\")) if study.get(
                      "ModalitiesInStudy") else (), "series": []}
        for series in study.get("InventoriedSeriesSequence", []):
            se_removed = s_removed or series.get("RemovedFromOperationalUse") == "Y"
            se_avail = _text(series.get("InstanceAvailability"))
            instances = series.get("InventoriedInstancesSequence", [])
            record["series"].append((str(series.SeriesInstanceUID), _text(series.get("Modality")), se_removed,
                                     se_avail, len(instances)))
            stated = se_avail or s_avail
            for inst in instances:
                holdings.append(Holding(
                    str(study.StudyInstanceUID), str(series.SeriesInstanceUID), str(inst.SOPInstanceUID),
                    str(inst.get("SOPClassUID", "")),
                    _text(inst.get("InstanceAvailability")) or (stated if stated == "ONLINE" else ""),
                    _text(inst.get("RetrieveAETitle")) or _text(series.get("RetrieveAETitle")) or s_ae,
                    _text(inst.get("RetrieveURL")) or _text(series.get("RetrieveURL")) or s_url,
                    se_removed or inst.get("RemovedFromOperationalUse") == "Y"))
        studies.append(record)
    return header, studies, holdings


def streamed(inv) -> tuple[dict, list[dict], list[Holding]]:
    h = inv.header

    def refs(items):
        return [(r.sop_class_uid, r.sop_instance_uid, r.end_point, refs(r.children)) for r in items]

    header = {k: getattr(h, k) for k in ("sop_instance_uid", "level", "completion", "transaction_uid", "content_date",
                                         "content_time", "purpose", "description", "records_in_instance",
                                         "total_records", "inventory_end_point", "study_end_point")}
    header["incorporated"] = refs(h.incorporated)
    studies, holdings = [], []
    for s in inv.studies():
        studies.append({"study_uid": s.study_uid, "removed": s.removed, "retrieve_ae": s.retrieve_ae,
                        "retrieve_url": s.retrieve_url, "availability": s.availability,
                        "series_count": s.series_count, "instance_count": s.instance_count,
                        "modalities": s.modalities,
                        "series": [(se.series_uid, se.modality, se.removed, se.availability, se.instances)
                                   for se in s.series]})
        holdings.extend(s.holdings)
    # study_rows(), the Inventory path's reader: the same instances as tuples, without the SOP Class.
    assert [(uid, row) for uid, rows in inv.study_rows() for row in rows] == [
        (x.study_uid, (x.study_uid, x.series_uid, x.sop_uid, x.availability, x.retrieve_ae, x.retrieve_url, x.removed))
        for x in holdings]
    return header, studies, holdings


# -- encodings -------------------------------------------------------------------------------------


def _undefined_everywhere(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
                _undefined_everywhere(item)


def encode(ds: Dataset, transfer_syntax: str, undefined: bool) -> bytes:
    """The data set (no file meta) as pydicom writes it."""
    if undefined:
        _undefined_everywhere(ds)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_VR_LE
    write_dataset(fp, ds)
    return fp.getvalue()


def without_meta(part10: bytes) -> bytes:
    group_length = struct.unpack_from("<I", part10, 132 + 8)[0]
    return part10[132 + 12 + group_length:]


def check_all_encodings(ds: Dataset) -> tuple[dict, list[dict], list[Holding]]:
    """The reader agrees with pydicom on `ds` in all four encodings; returns what pydicom says."""
    part10 = _part10(ds)
    expected = naive(dcmread(io.BytesIO(part10)))
    for ts, undefined in ENCODINGS:
        raw = encode(dcmread(io.BytesIO(part10)), ts, undefined)
        assert naive(_read(raw, ts)) == expected
        assert streamed(parse(raw, ts)) == expected, (ts, undefined)
    return expected


def _read(raw: bytes, ts: str) -> Dataset:
    from pynetdicom.dsutils import decode

    return decode(io.BytesIO(raw), ts == IMPLICIT_VR_LE, True)


def _part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.file_meta = ds.get("file_meta") or Dataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_VR_LE
    ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return out.getvalue()


# -- fixtures ----------------------------------------------------------------------------------------


ARCHIVE = dict(record_limit=3, fanout=2)


@pytest.fixture(scope="module")
def varied(archive):
    """Seven studies with every fault the archive can show in an inventory."""
    h = archive.holdings
    seeded = h.seed(7, 2, 3)
    h.mark_removed(study=seeded.study_uid(0))
    h.mark_removed(series=seeded.series_uid(1, 1))
    h.mark_removed(instance=seeded.instance_uid(2, 0, 2))
    h.set_availability("NEARLINE", instance=seeded.instance_uid(3, 0, 1))
    h.set_availability("OFFLINE", series=seeded.series_uid(3, 1))
    h.set_retrieve(ae_title="ELSEWHERE", instance=seeded.instance_uid(4, 1, 0))
    h.set_retrieve(url="https://archive.example/wado/studies/5", study=seeded.study_uid(5))
    h.add_unannounced(study_uid=seeded.study_uid(6), sop_class_uid="1.2.840.10008.5.1.4.1.1.4", modality="MR")
    return seeded


def _nodes(archive, built) -> list[bytes]:
    return [archive.inventories.data(uid) for uid in built.instance_uids]


# -- the archive's inventories -----------------------------------------------------------------------


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "INSTANCE"])
def test_archive_inventories_read_like_pydicom(archive, varied, level):
    built = archive.build_inventory(level, scope=Scope(study_uids=varied.study_uids), transaction_uid=generate_uid(),
                                    purpose="reconciliation", description="nightly")
    assert len(built.instance_uids) > 2  # a tree: root and leaves
    all_holdings, all_studies = [], []
    for part10 in _nodes(archive, built):
        ds = dcmread(io.BytesIO(part10))
        expected = naive(ds)
        # the archive's own bytes: Part 10, and the bare data set (as C-GET delivers it)
        assert streamed(parse(part10)) == expected
        assert streamed(parse(without_meta(part10), EXPLICIT_VR_LE)) == expected
        for ts, undefined in ENCODINGS:
            raw = encode(dcmread(io.BytesIO(part10)), ts, undefined)
            assert streamed(parse(raw, ts)) == expected, (ts, undefined)
        all_studies.extend(expected[1])
        all_holdings.extend(expected[2])
    assert sorted(s["study_uid"] for s in all_studies) == sorted(varied.study_uids)
    if level != "INSTANCE":
        assert all_holdings == []
        return
    by_uid = {h.sop_uid: h for h in all_holdings}
    assert len(by_uid) == 7 * 6 + 1
    assert {h.removed for h in all_holdings if h.study_uid == varied.study_uid(0)} == {True}
    assert [h.removed for h in all_holdings if h.series_uid == varied.series_uid(1, 1)] == [True] * 3
    assert [h.removed for h in all_holdings if h.series_uid == varied.series_uid(1, 0)] == [False] * 3
    assert by_uid[varied.instance_uid(2, 0, 2)].removed and not by_uid[varied.instance_uid(2, 0, 1)].removed
    assert by_uid[varied.instance_uid(3, 0, 1)].availability == "NEARLINE"
    assert by_uid[varied.instance_uid(3, 1, 2)].availability == "OFFLINE"
    # The IOD has no instance-level Retrieve AE Title: every instance gets all of its study's values.
    assert {h.retrieve_ae for h in all_holdings if h.study_uid == varied.study_uid(4)} == {"ELSEWHERE\\REFARCH"}
    assert {h.retrieve_url for h in all_holdings if h.study_uid == varied.study_uid(5)} == {
        "https://archive.example/wado/studies/5"}
    assert any(h.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4" for h in all_holdings)


def test_header_tree_and_counts(archive, varied):
    tuid = generate_uid()
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=varied.study_uids), record_limit=2,
                                    fanout=2, transaction_uid=tuid)
    root = parse(archive.inventories.data(built.root_uid))
    h = root.header
    assert (h.sop_instance_uid, h.level, h.completion, h.transaction_uid) == (built.root_uid, "INSTANCE",
                                                                              "COMPLETE", tuid)
    assert h.records_in_instance == 0 and h.total_records == 7
    assert sorted(h.incorporated_uids()) == sorted(built.instance_uids[1:])
    assert any(ref.children for ref in h.incorporated)  # nested: index nodes under the root
    assert h.inventory_end_point == AccessEndPoint("REFARCH") and h.content_date and h.content_time
    assert list(root.studies()) == []
    total = 0
    for uid in built.instance_uids[1:]:
        node = parse(archive.inventories.data(uid))
        for study in node.studies():
            counts = study.counts()
            assert counts.instance_count == len(study.holdings) == sum(counts.series.values())
            assert counts.series_count == len(counts.series)
            total += 1
    assert total == 7


def test_file_paths_and_streams(archive, varied, tmp_path):
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=varied.study_uids[:2]))
    part10 = archive.inventories.data(built.root_uid)
    raw = encode(dcmread(io.BytesIO(part10)), IMPLICIT_VR_LE, True)
    path = tmp_path / "inventory.raw"
    path.write_bytes(raw)
    with open_inventory(path, IMPLICIT_VR_LE) as mapped:  # memory-mapped
        from_file = list(mapped.holdings())
    with parse(io.BytesIO(raw), IMPLICIT_VR_LE) as streamed_in:  # no file descriptor: read whole
        assert list(streamed_in.holdings()) == from_file
    (tmp_path / "p10.dcm").write_bytes(part10)
    with open_inventory(tmp_path / "p10.dcm") as p10:  # Part 10: the file meta names the syntax
        assert list(p10.holdings()) == from_file and len(from_file) == 12
        assert list(p10.study_uids()) == varied.study_uids[:2]


# -- inheritance the archive never produces ----------------------------------------------------------


def _edited(archive, varied) -> Dataset:
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=varied.study_uids[3:6]), record_limit=10)
    return dcmread(io.BytesIO(archive.inventories.data(built.root_uid)))


def test_end_points_series_and_instance_values_and_availability_defaults(archive, varied):
    ds = _edited(archive, varied)
    ep = Dataset()
    ep.RetrieveAETitle = "STUDYEP"
    ep.RetrieveURL = "https://ep.example/wado"
    ds.StudyAccessEndPointsSequence = [ep]
    s3, s4, s5 = ds.InventoriedStudiesSequence
    del s3.RetrieveAETitle  # falls back to the end point
    s3.InventoriedSeriesSequence[0].RetrieveAETitle = "SERIESAE"
    s3.InventoriedSeriesSequence[0].InventoriedInstancesSequence[0].RetrieveAETitle = "INSTAE"
    s3.InventoriedSeriesSequence[0].InventoriedInstancesSequence[0].RetrieveURL = "https://inst.example/1"
    for inst in s3.InventoriedSeriesSequence[1].InventoriedInstancesSequence:
        del inst.InstanceAvailability  # series says OFFLINE: not a default
    for inst in s4.InventoriedSeriesSequence[0].InventoriedInstancesSequence:
        del inst.InstanceAvailability  # series says ONLINE: it is
    del s4.InventoriedSeriesSequence[1].InstanceAvailability
    for inst in s4.InventoriedSeriesSequence[1].InventoriedInstancesSequence:
        del inst.InstanceAvailability  # series silent, study ONLINE
    s5.InventoriedSeriesSequence[0].InventoriedInstancesSequence[1].RemovedFromOperationalUse = "Y"
    header, studies, holdings = check_all_encodings(ds)
    assert header["study_end_point"] == AccessEndPoint("STUDYEP", "https://ep.example/wado")
    by_uid = {h.sop_uid: h for h in holdings}
    first = by_uid[varied.instance_uid(3, 0, 0)]
    assert (first.retrieve_ae, first.retrieve_url) == ("INSTAE", "https://inst.example/1")
    assert by_uid[varied.instance_uid(3, 0, 1)].retrieve_ae == "SERIESAE"
    assert by_uid[varied.instance_uid(3, 1, 0)].retrieve_ae == "STUDYEP"
    assert by_uid[varied.instance_uid(3, 1, 0)].retrieve_url == "https://ep.example/wado"
    assert by_uid[varied.instance_uid(3, 1, 0)].availability == ""
    assert by_uid[varied.instance_uid(4, 0, 0)].availability == "ONLINE"
    assert by_uid[varied.instance_uid(4, 1, 0)].availability == "ONLINE"
    assert by_uid[varied.instance_uid(5, 0, 1)].removed and not by_uid[varied.instance_uid(5, 0, 0)].removed
    assert by_uid[varied.instance_uid(4, 0, 0)].retrieve_url == "https://ep.example/wado"
    assert by_uid[varied.instance_uid(5, 0, 0)].retrieve_url == "https://archive.example/wado/studies/5"  # record wins


def test_inventory_access_end_points_are_not_study_locations(archive, varied):
    ds = _edited(archive, varied)
    for study in ds.InventoriedStudiesSequence:
        del study.RetrieveAETitle
    _, _, holdings = check_all_encodings(ds)
    assert {h.retrieve_ae for h in holdings} == {""}  # (0008,0420) is where the Inventory is, not the studies


def test_non_ascii_text_and_reason_codes(archive, varied):
    ds = _edited(archive, varied)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InventoryPurpose = "Réconciliation nocturne"
    ds.InventoryInstanceDescription = "Übersicht"
    ds.InventoriedStudiesSequence[0].PatientName = "Müller^Jürgen"
    header, _, _ = check_all_encodings(ds)
    assert header["purpose"] == "Réconciliation nocturne" and header["description"] == "Übersicht"


# -- malformed input -------------------------------------------------------------------------------


def test_malformed_input_is_refused(archive, varied):
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=varied.study_uids[:2]))
    raw = without_meta(archive.inventories.data(built.root_uid))
    with pytest.raises(InventoryFormatError, match="transfer syntax required"):
        parse(raw)
    with pytest.raises(InventoryFormatError, match="unsupported transfer syntax"):
        parse(raw, "1.2.840.10008.1.2.1.99")
    with pytest.raises(InventoryFormatError):
        parse(raw[:len(raw) // 2], EXPLICIT_VR_LE)  # the header pass jumps over the records: caught there
    with pytest.raises(InventoryFormatError, match="not an Inventory"):
        parse(encode(Dataset(), EXPLICIT_VR_LE, False), EXPLICIT_VR_LE)
    ds = dcmread(io.BytesIO(archive.inventories.data(built.root_uid)))
    ds.NumberOfStudyRecordsInInstance = 3  # claims more than it lists
    with pytest.raises(InventoryFormatError, match="2 study records"):
        list(parse(encode(ds, EXPLICIT_VR_LE, False), EXPLICIT_VR_LE).studies())
    undefined = encode(dcmread(io.BytesIO(archive.inventories.data(built.root_uid))), EXPLICIT_VR_LE, True)
    with pytest.raises(InventoryFormatError):
        parse(undefined[:-40], EXPLICIT_VR_LE)  # a delimiter missing


def test_a_sequence_encoded_as_un_is_refused(archive, varied):
    built = archive.build_inventory("INSTANCE", scope=Scope(study_uids=varied.study_uids[:1]))
    raw = bytearray(without_meta(archive.inventories.data(built.root_uid)))
    at = raw.find(b"\x08\x00\x23\x04SQ")  # Inventoried Studies Sequence
    raw[at + 4:at + 6] = b"UN"
    with pytest.raises(InventoryFormatError, match="encoded as UN"):
        parse(bytes(raw), EXPLICIT_VR_LE)


# -- random inventories ------------------------------------------------------------------------------

_AVAIL = ["ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE"]


def _maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def _reason() -> Sequence:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113001", "DCM", "Rejected for Quality Reasons"
    return Sequence([code])


def _level_attributes(rng: random.Random, item: Dataset) -> None:
    """The optional attributes every level may carry, at random."""
    if _maybe(rng, 0.3):
        item.RemovedFromOperationalUse = rng.choice(["Y", "N"])
        if item.RemovedFromOperationalUse == "Y":
            item.ReasonForRemovalCodeSequence = _reason()
    if _maybe(rng, 0.4):
        item.InstanceAvailability = rng.choice(_AVAIL)
    if _maybe(rng, 0.3):
        item.RetrieveAETitle = rng.sample(["AE1", "AE2", "AE3"], rng.randint(1, 2))
    if _maybe(rng, 0.2):
        item.RetrieveURL = f"https://h{rng.randint(1, 3)}.example/wado"


def random_inventory(rng: random.Random) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = INVENTORY_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.ContentDate, ds.ContentTime = "20240102", "030405"
    level = rng.choice(["STUDY", "SERIES", "INSTANCE"])
    ds.InventoryLevel = level
    ds.InventoryCompletionStatus = rng.choice(["COMPLETE", "PARTIAL", "FAILURE", "CANCELED"])
    if _maybe(rng):
        ds.TransactionUID = generate_uid()
    if _maybe(rng):
        ep = Dataset()
        ep.RetrieveAETitle = "EPAE"
        if _maybe(rng):
            ep.RetrieveURL = "https://ep.example"
        ds.StudyAccessEndPointsSequence = [ep]
    if _maybe(rng):
        ep = Dataset()
        ep.RetrieveAETitle = "INVAE"
        ds.InventoryAccessEndPointsSequence = [ep]
    refs = []
    for _ in range(rng.randint(0, 3)):
        ref = Dataset()
        ref.ReferencedSOPClassUID = INVENTORY_STORAGE
        ref.ReferencedSOPInstanceUID = generate_uid()
        if _maybe(rng, 0.3):
            child = Dataset()
            child.ReferencedSOPClassUID = INVENTORY_STORAGE
            child.ReferencedSOPInstanceUID = generate_uid()
            ref.IncorporatedInventoryInstanceSequence = [child]
        refs.append(ref)
    ds.IncorporatedInventoryInstanceSequence = refs
    studies = []
    for k in range(rng.randint(0, 4)):
        study = Dataset()
        study.StudyInstanceUID = generate_uid()
        study.ItemInventoryDateTime = "20240102030405"
        study.PatientName = rng.choice(["A^B", "", "Ünïcode^Námé"])
        study.ModalitiesInStudy = rng.sample(["CT", "MR", "SR"], rng.randint(1, 2))
        _level_attributes(rng, study)
        series_items = []
        if level != "STUDY":
            for _ in range(rng.randint(0, 3)):
                series = Dataset()
                series.SeriesInstanceUID = generate_uid()
                series.Modality = "CT"
                series.SeriesNumber = rng.randint(1, 9)
                _level_attributes(rng, series)
                if level == "INSTANCE":
                    instances = []
                    for i in range(rng.randint(0, 4)):
                        inst = Dataset()
                        inst.SOPClassUID = rng.choice(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"])
                        inst.SOPInstanceUID = generate_uid()
                        inst.InstanceNumber = i + 1
                        _level_attributes(rng, inst)
                        if _maybe(rng, 0.2):
                            inst.Rows = 512  # an element the reader skips
                        instances.append(inst)
                    series.InventoriedInstancesSequence = instances
                series_items.append(series)
            study.InventoriedSeriesSequence = series_items
        study.NumberOfStudyRelatedSeries = len(series_items)
        study.NumberOfStudyRelatedInstances = sum(len(s.get("InventoriedInstancesSequence", [])) for s in series_items)
        studies.append(study)
    ds.InventoriedStudiesSequence = studies
    ds.NumberOfStudyRecordsInInstance = len(studies)
    ds.TotalNumberOfStudyRecords = len(studies) + rng.randint(0, 100)
    return ds


def _randomly_undefined(rng: random.Random, ds: Dataset) -> None:
    """Each sequence and item independently of defined or undefined length."""
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = _maybe(rng)
            for item in elem.value:
                item.is_undefined_length_sequence_item = _maybe(rng)
                _randomly_undefined(rng, item)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), implicit=st.booleans())
def test_random_inventories_match_a_naive_pydicom_walk(seed, implicit):
    rng = random.Random(seed)
    ds = random_inventory(rng)
    _randomly_undefined(rng, ds)
    ts = IMPLICIT_VR_LE if implicit else EXPLICIT_VR_LE
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    raw = fp.getvalue()
    assert streamed(parse(raw, ts)) == naive(_read(raw, ts))
