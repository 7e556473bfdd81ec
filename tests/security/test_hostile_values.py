"""Hostile values in well-formed requests, sent to a real server over real associations: impossible dates
and times (0106 naming the attribute, nothing stored), elements whose explicit VR the data dictionary does
not allow, elements sent twice or out of ascending tag order (refused as undecodable, nothing stored), and
C-FIND identifiers that cannot be decoded (A900, a C-FIND status). None of them may leave an ERROR record or
a traceback in the log. The date and time rules themselves (PS3.5 Table 6.2-1) are tabled first."""

from __future__ import annotations

import logging
import struct
from io import BytesIO

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom.dimse_primitives import C_FIND, N_CREATE
from pynetdicom.sop_class import (InstanceAvailabilityNotification as IAN, InventoryFind,
                                  ModalityPerformedProcedureStep as MPPS, UnifiedProcedureStepPull as PULL,
                                  UnifiedProcedureStepPush as PUSH, UnifiedProcedureStepQuery as QUERY)
from sqlalchemy import func, select

import testkit.mpps
from testkit.dimse import send_raw
from testkit.ian import make_ian
from testkit.ups import code, workitem
from workflow.dimse import response_fields  # noqa: F401  (Attribute Identifier List in responses)
from workflow.dimse.dicom_json import DecodeError, dataset_bytes_to_json
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release
from workflow.ian.tables import Notification
from workflow.kernel.attributes import DATE, DATETIME, TIME
from workflow.mpps.tables import PerformedStep

# pydicom warns about the values it cannot read: expected here (a WARNING, never an ERROR).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXPLICIT, IMPLICIT = str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)


# --- The date and time rules (PS3.5 Table 6.2-1) --------------------------------------------------------------

DATES = [
    ("20261123", True), ("20240229", True), ("20000229", True), ("19000101", True), ("20261231", True),
    ("20261340", False), ("20260230", False), ("20230229", False), ("19000229", False), ("20260431", False),
    ("20260001", False), ("20260100", False), ("20261232", False),
    ("2026112", False), ("202611230", False), ("2026-11-23", False), ("2026.11.23", False), ("", False),
    ("2026112a", False), ("２０２６１１２３", False), ("20261123\n", False),
]
TIMES = [
    ("09", True), ("0930", True), ("093015", True), ("093015.1", True), ("093015.123456", True),
    ("235959", True), ("235960", True), ("000000", True), ("093015 ", True),
    ("24", False), ("2400", False), ("250000", False), ("0960", False), ("093061", False), ("099915", False),
    ("093015.1234567", False), ("0930.5", False), ("09:30:15", False), ("9", False), ("093", False), ("", False),
]
DATETIMES = [
    ("2026", True), ("202611", True), ("20261123", True), ("2026112309", True), ("202611230930", True),
    ("20261123093015", True), ("20261123093015.123456", True), ("20240229120000", True),
    ("20261123093015+0100", True), ("20261123093015-0500", True), ("20261123093015+0000", True),
    ("20261123093015+1400", True), ("20261123093015-1200", True), ("2026+0530", True),
    ("20261231235960", True), ("20261123093015.5+0545", True),
    ("202613", False), ("202600", False), ("20261399120000", False), ("20260230", False), ("20230229", False),
    ("20261201250000", False), ("2026120124", False), ("202612010960", False), ("20261201095961", False),
    ("20261123090000+9999", False), ("20261123090000+1401", False), ("20261123090000-1201", False),
    ("20261123090000+0160", False), ("20261123090000-0000", False), ("20261123090000+01", False),
    ("2026112309.5", False), ("20261123093015.1234567", False), ("202", False), ("", False),
    ("20261123 093015", False),
]


@pytest.mark.parametrize("value, valid", DATES)
def test_date_rule(value, valid):
    assert DATE.ok(value) is valid


@pytest.mark.parametrize("value, valid", TIMES)
def test_time_rule(value, valid):
    assert TIME.ok(value) is valid


@pytest.mark.parametrize("value, valid", DATETIMES)
def test_datetime_rule(value, valid):
    assert DATETIME.ok(value) is valid


# --- Raw data sets --------------------------------------------------------------------------------------------

def encode(ds: Dataset, implicit: bool = False) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def element(group: int, elem: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element, with whatever VR it is given."""
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "UN") else b" "
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"):
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def sequence(group: int, elem: int, *items: bytes) -> bytes:
    body = b"".join(struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return element(group, elem, "SQ", body)


# A character set the hand-written decoder leaves to pydicom: the same checks on pydicom's path.
TO_PYDICOM = element(0x0008, 0x0005, "CS", b"ISO_IR 144")


@pytest.mark.parametrize("charset", [b"", TO_PYDICOM], ids=["fast path", "pydicom path"])
@pytest.mark.parametrize("data, fault", [
    (element(0x0010, 0x0020, "LO", b"P1") + element(0x0020, 0x000D, "UI", b"1.2.3")
     + element(0x0020, 0x000D, "UI", b"1.2.4"), "(0020,000D) appears twice"),
    (element(0x0020, 0x000D, "UI", b"1.2.3") + element(0x0010, 0x0020, "LO", b"P1"),
     "(0010,0020) out of ascending tag order"),
    (element(0x0010, 0x0020, "FD", struct.pack("<d", 1.5)), "(0010,0020) has VR FD, dictionary LO"),
    (element(0x0074, 0x1204, "US", struct.pack("<H", 5)), "(0074,1204) has VR US, dictionary LO"),
    (sequence(0x0040, 0x4018, element(0x0008, 0x0100, "PN", b"X^Y") + element(0x0008, 0x0102, "SH", b"DCM")),
     "(0008,0100) has VR PN, dictionary SH"),
    (sequence(0x0040, 0x4018, element(0x0008, 0x0100, "SH", b"1") + element(0x0008, 0x0100, "SH", b"2")),
     "(0008,0100) appears twice"),
    (sequence(0x0040, 0x4018, element(0x0008, 0x0102, "SH", b"DCM") + element(0x0008, 0x0100, "SH", b"1")),
     "(0008,0100) out of ascending tag order"),
], ids=["duplicate", "order", "FD for LO", "US for LO", "PN in an item", "duplicate in an item", "order in an item"])
def test_the_decoder_refuses_what_ps3_5_forbids(charset, data, fault):
    with pytest.raises(DecodeError, match=f"^{fault.replace('(', '.').replace(')', '.')}$"):
        dataset_bytes_to_json(charset + data, EXPLICIT)


@pytest.mark.parametrize("charset", [b"", TO_PYDICOM], ids=["fast path", "pydicom path"])
def test_the_decoder_takes_the_vrs_the_dictionary_allows(charset):
    data = (element(0x0010, 0x0020, "UN", b"P1")  # UN: any tag; pydicom gives it the dictionary's VR
            + element(0x0028, 0x0106, "SS", struct.pack("<h", -5))  # "US or SS"
            + element(0x0028, 0x1201, "OW", b"\0\0"))  # "OW"
    got = dataset_bytes_to_json(charset + data, EXPLICIT)
    assert got["00100020"] == {"vr": "LO", "Value": ["P1"]}
    assert got["00280106"] == {"vr": "SS", "Value": [-5]}


def test_a_value_pydicom_cannot_read_is_named_without_an_error_record(caplog):
    with caplog.at_level(logging.WARNING):
        with pytest.raises(DecodeError, match=r"^\(0020,0013\) invalid IS value 'abc'$"):
            dataset_bytes_to_json(struct.pack("<HHL", 0x0020, 0x0013, 4) + b"abc ", IMPLICIT)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Against a real server ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(server):
    return server


@pytest.fixture
def quiet(caplog):
    """Records of the server's own threads too (they log through the root logger); after the test none
    may be an ERROR or carry a traceback."""
    caplog.set_level(logging.INFO)
    yield caplog
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, loud


def associate(app, *contexts: str, syntax: str = EXPLICIT):
    """An association proposing `contexts` in `syntax` only (Explicit VR LE: the VR is the sender's)."""
    ae = NoDelayAE(ae_title="HOSTILE")
    for context in contexts:
        ae.add_requested_context(context, [syntax])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", app.dicom.port, ae_title="WFM")
    assert assoc.is_established
    return assoc


def n_create_raw(assoc, sop_class: str, data: bytes, uid: str):
    request = N_CREATE()
    request.MessageID, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = 1, sop_class, uid
    request.AttributeList = BytesIO(data)
    return send_raw(assoc, request, sop_class)[-1]


def c_find_raw(assoc, sop_class: str, data: bytes):
    request = C_FIND()
    request.MessageID, request.AffectedSOPClassUID, request.Priority = 2, sop_class, 2
    request.Identifier = BytesIO(data)
    return send_raw(assoc, request, sop_class)


def count(app, table, *where) -> int:
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def assert_no_workitem(assoc, uid: str) -> None:
    status, _ = assoc.send_n_get([0x00741000], PUSH, uid)
    assert status.Status == 0xC307  # no such workitem: nothing of the refused request was stored


# --- A: impossible dates and times --------------------------------------------------------------------------

@pytest.mark.parametrize("keyword, tag, value", [
    ("PatientBirthDate", "(0010,0030)", "20261340"),
    ("PatientBirthDate", "(0010,0030)", "20260230"),
    ("ScheduledProcedureStepStartDateTime", "(0040,4005)", "20261399120000"),
    ("ScheduledProcedureStepStartDateTime", "(0040,4005)", "20261201250000"),
    ("ScheduledProcedureStepStartDateTime", "(0040,4005)", "20261123090000+9999"),
    ("ExpectedCompletionDateTime", "(0040,4011)", "20260230"),
])
def test_ups_n_create_with_an_impossible_date_is_0106(app, quiet, keyword, tag, value):
    assoc = associate(app, PUSH)
    try:
        uid = generate_uid()
        status, _ = assoc.send_n_create(workitem(**{keyword: value}), PUSH, uid)
        assert status.Status == 0x0106
        assert f"{keyword} {tag} invalid" in status.ErrorComment
        assert_no_workitem(assoc, uid)
    finally:
        release(assoc)


def test_ups_n_set_with_an_impossible_date_is_0106_and_changes_nothing(app, quiet):
    assoc = associate(app, PUSH, PULL)
    try:
        uid = generate_uid()
        status, _ = assoc.send_n_create(workitem(), PUSH, uid)
        assert status.Status == 0x0000
        change = Dataset()
        change.ScheduledProcedureStepStartDateTime = "20261399120000"
        status, _ = assoc.send_n_set(change, PUSH, uid)
        assert status.Status == 0x0106
        assert "ScheduledProcedureStepStartDateTime (0040,4005) invalid" in status.ErrorComment
        assert status.AttributeIdentifierList == 0x00404005  # one tag: pydicom gives it as a single value
        status, got = assoc.send_n_get([0x00404005], PUSH, uid)
        assert status.Status == 0x0000 and got.ScheduledProcedureStepStartDateTime == "20261123090000"
    finally:
        release(assoc)


@pytest.mark.parametrize("keyword, tag, value", [
    ("PerformedProcedureStepStartDate", "(0040,0244)", "20261340"),
    ("PerformedProcedureStepStartDate", "(0040,0244)", "20260230"),
    ("PatientBirthDate", "(0010,0030)", "20230229"),
])
def test_mpps_n_create_with_an_impossible_date_is_0106(app, quiet, keyword, tag, value):
    ds = testkit.mpps.in_progress(generate_uid())
    setattr(ds, keyword, value)
    uid = generate_uid()
    assoc = associate(app, MPPS)
    try:
        status, _ = assoc.send_n_create(ds, MPPS, uid)
    finally:
        release(assoc)
    assert status.Status == 0x0106
    assert f"{keyword} {tag} invalid" in status.ErrorComment
    assert count(app, PerformedStep, PerformedStep.sop_instance_uid == uid) == 0


# --- B: an explicit VR the data dictionary does not allow ---------------------------------------------------

@pytest.mark.parametrize("tag, vr, value, fault", [
    (0x00741204, "US", 5, "(0074,1204) has VR US, dictionary LO"),  # Procedure Step Label
    (0x00100020, "FD", 1.5, "(0010,0020) has VR FD, dictionary LO"),  # Patient ID
    (0x00741000, "US", 1, "(0074,1000) has VR US, dictionary CS"),  # Procedure Step State
])
def test_ups_n_create_with_a_vr_the_dictionary_does_not_allow_is_refused(app, quiet, tag, vr, value, fault):
    ds = workitem()
    ds[tag] = DataElement(tag, vr, value)
    assoc = associate(app, PUSH)
    try:
        uid = generate_uid()
        status, _ = assoc.send_n_create(ds, PUSH, uid)
        assert status.Status == 0x0110
        assert status.ErrorComment == f"undecodable data set: {fault}"
        assert_no_workitem(assoc, uid)
    finally:
        release(assoc)


@pytest.mark.parametrize("keyword, vr, value, fault", [
    ("CodeValue", "PN", "X^Y", "(0008,0100) has VR PN, dictionary SH"),
    ("CodingSchemeDesignator", "SQ", [Dataset()], "(0008,0102) has VR SQ, dictionary SH"),
])
def test_a_wrong_vr_inside_a_code_item_is_refused_not_a_crash(app, quiet, keyword, vr, value, fault):
    from pydicom.datadict import tag_for_keyword
    item = code("110005", "DCM", "Interpretation")
    tag = tag_for_keyword(keyword)
    item[tag] = DataElement(tag, vr, value)
    assoc = associate(app, PUSH)
    try:
        uid = generate_uid()
        status, _ = assoc.send_n_create(workitem(ScheduledWorkitemCodeSequence=[item]), PUSH, uid)
        assert status.Status == 0x0110
        assert status.ErrorComment == f"undecodable data set: {fault}"
        assert_no_workitem(assoc, uid)
    finally:
        release(assoc)


def test_a_wrong_vr_after_a_character_set_pydicom_decodes_is_refused_too(app, quiet):
    ds = workitem()
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic: decoded by pydicom, not by the hand-written decoder
    ds[0x00741204] = DataElement(0x00741204, "US", 5)
    assoc = associate(app, PUSH)
    try:
        uid = generate_uid()
        status, _ = assoc.send_n_create(ds, PUSH, uid)
        assert status.Status == 0x0110
        assert status.ErrorComment == "undecodable data set: (0074,1204) has VR US, dictionary LO"
        assert_no_workitem(assoc, uid)
    finally:
        release(assoc)


# --- C: an element twice, or out of ascending tag order -----------------------------------------------------

def ian_bytes(study_uid: str, item_extra: int | None = None, retag: int | None = None) -> bytes:
    """An IAN in Explicit VR LE; with `item_extra`, its first Referenced SOP item carries one more UI
    element there, re-tagged `retag` in the bytes (same length: every enclosing length stays right)."""
    ds = make_ian(study_uid=study_uid)
    if item_extra is None:
        return encode(ds)
    item = ds.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    item.add_new(item_extra, "UI", item.ReferencedSOPClassUID)
    data = encode(ds)
    old, new = (struct.pack("<HH", t >> 16, t & 0xFFFF) + b"UI" for t in (item_extra, retag))
    assert data.count(old) == 1
    return data.replace(old, new)


@pytest.mark.parametrize("how, fault", [
    ("twice", "(0020,000D) appears twice"),
    ("out of order", "(0010,0020) out of ascending tag order"),
    ("twice in an item", "(0008,1150) appears twice"),
    ("out of order in an item", "(0008,0016) out of ascending tag order"),
])
def test_ian_with_an_element_twice_or_out_of_order_is_refused(app, quiet, how, fault):
    study = generate_uid()
    if how == "twice":
        data = ian_bytes(study) + element(0x0020, 0x000D, "UI", generate_uid().encode())
    elif how == "out of order":
        data = ian_bytes(study) + element(0x0010, 0x0020, "LO", b"P1")
    elif how == "twice in an item":  # Referenced SOP Class UID (0008,1150) a second time, right after itself
        data = ian_bytes(study, 0x00081151, 0x00081150)
    else:  # SOP Class UID (0008,0016) after Referenced SOP Instance UID (0008,1155)
        data = ian_bytes(study, 0x00081156, 0x00080016)
    uid = generate_uid()
    assoc = associate(app, IAN)
    try:
        response = n_create_raw(assoc, IAN, data, uid)
    finally:
        release(assoc)
    assert int(response.Status) == 0x0110
    assert response.ErrorComment == f"undecodable data set: {fault}"
    assert count(app, Notification, Notification.study_instance_uid == study) == 0
    assert count(app, Notification, Notification.sop_instance_uid == uid) == 0


def test_the_same_ian_in_order_is_stored(app, quiet):
    """The control: the bytes the tests above break are an IAN the server takes."""
    study, uid = generate_uid(), generate_uid()
    assoc = associate(app, IAN)
    try:
        response = n_create_raw(assoc, IAN, ian_bytes(study), uid)
    finally:
        release(assoc)
    assert int(response.Status) == 0x0000
    assert count(app, Notification, Notification.sop_instance_uid == uid) == 1


# --- D: C-FIND identifiers that cannot be decoded -----------------------------------------------------------

INSTANCE_NUMBER_ABC = element(0x0020, 0x0013, "IS", b"abc")


@pytest.mark.parametrize("identifier, fault", [
    (element(0x0010, 0x0020, "LO", b"PID1")[:-2], "element length past end at offset 0"),
    (element(0x0010, 0x0020, "LO", b"") + INSTANCE_NUMBER_ABC, "(0020,0013) invalid IS value 'abc'"),
    (element(0x0010, 0x0020, "LO", b"") * 2, "(0010,0020) appears twice"),
], ids=["truncated", "IS abc", "duplicate"])
def test_ups_c_find_with_an_undecodable_identifier_is_a900(app, quiet, identifier, fault):
    assoc = associate(app, QUERY)
    try:
        responses = c_find_raw(assoc, QUERY, identifier)
    finally:
        release(assoc)
    assert [int(r.Status) for r in responses] == [0xA900]
    assert responses[-1].ErrorComment == f"undecodable identifier: {fault}"


def test_inventory_find_with_an_undecodable_identifier_is_a900(app, quiet):
    assoc = associate(app, InventoryFind)
    try:
        responses = c_find_raw(assoc, InventoryFind, INSTANCE_NUMBER_ABC)
    finally:
        release(assoc)
    assert [int(r.Status) for r in responses] == [0xA900]
    assert responses[-1].ErrorComment == "undecodable identifier: (0020,0013) invalid IS value 'abc'"
