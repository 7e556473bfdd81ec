"""A DIMSE-N request is served only on a presentation context negotiated for its SOP class (PS3.7 10.1),
UPS requests excepted: they carry the UPS Push SOP Class UID on any UPS context (PS3.4 CC.3.1.1).

pynetdicom routes a request by the SOP Class UID in its command, whatever the context it came on, so an
IAN sent on an MPPS or a Verification context was stored as an IAN. Now such a request, or one for a SOP
class the server does not serve, is answered 0118 (No such SOP Class) with a log line saying why; it
stores nothing, and the association goes on. Real associations to a real server on 127.0.0.1, on SQLite
and PostgreSQL."""

from __future__ import annotations

import logging
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import dimse_primitives as prim
from pynetdicom.dsutils import encode
from sqlalchemy import func, select

from testkit.dimse import send_raw
from testkit.ian import make_ian
from testkit.mpps import in_progress
from testkit.ups import PULL, PUSH, QUERY, WATCH, ups_association, workitem
from workflow.ian.tables import Notification
from workflow.mpps.tables import PerformedStep
from workflow.ups.tables import Workitem

pytestmark = pytest.mark.slow

VERIFICATION = "1.2.840.10008.1.1"
IAN = "1.2.840.10008.5.1.4.33"
MPPS = "1.2.840.10008.3.1.2.3.3"
STORED_IN = {IAN: Notification, MPPS: PerformedStep, PUSH: Workitem}
MAKE = {IAN: make_ian, MPPS: lambda: in_progress(generate_uid()), PUSH: workitem}


def association(port: int):
    """Every context in Explicit VR Little Endian, the server's first choice (the requests are encoded so)."""
    return ups_association(port, "CROSSED", contexts=(VERIFICATION, IAN, MPPS, PUSH, PULL, WATCH, QUERY))


def n_create(sop_class: str, uid: str) -> prim.N_CREATE:
    request = prim.N_CREATE()
    request.MessageID, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = 11, sop_class, uid
    request.AttributeList = BytesIO(encode(MAKE[sop_class](), False, True))
    return request


def n_get(sop_class: str, uid: str) -> prim.N_GET:
    request = prim.N_GET()
    request.MessageID, request.RequestedSOPClassUID, request.RequestedSOPInstanceUID = 12, sop_class, uid
    request.AttributeIdentifierList = [0x00741000]  # Procedure Step State
    return request


def stored(server, sop_class: str, uid: str) -> bool:
    table = STORED_IN[sop_class]
    with server.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.sop_instance_uid == uid)
                            ).scalar_one() == 1


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "workflow.dimse" and r.getMessage().startswith("refused (0118)")]


@pytest.mark.parametrize("sop_class, context", [(IAN, MPPS), (IAN, VERIFICATION), (MPPS, IAN), (PUSH, IAN),
                                                (PUSH, MPPS)],
                         ids=["IAN-on-MPPS", "IAN-on-Verification", "MPPS-on-IAN", "UPS-on-IAN", "UPS-on-MPPS"])
def test_an_n_create_on_another_sop_class_context_is_0118_and_stores_nothing(server, caplog, sop_class, context):
    uid, after = generate_uid(), generate_uid()
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        response = send_raw(assoc, n_create(sop_class, uid), context, timeout=5.0)[-1]
        assert response.Status == 0x0118
        assert response.ErrorComment == "SOP Class not negotiated on this presentation context"
        # The association goes on: the same request on its own context is served.
        assert send_raw(assoc, n_create(sop_class, after), sop_class, timeout=5.0)[-1].Status == 0x0000
    assert not stored(server, sop_class, uid) and stored(server, sop_class, after)
    [line] = refusals(caplog)
    assert line.levelno == logging.WARNING and line.sop_instance == uid and line.calling_ae == "CROSSED"
    assert "presentation context for" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("context", [PUSH, PULL, WATCH, QUERY])
def test_ups_requests_carry_the_push_uid_on_any_ups_context(server, caplog, context):
    """CC.3.1.1: neither side may refuse them for that."""
    uid = generate_uid()
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        assert send_raw(assoc, n_create(PUSH, uid), context, timeout=5.0)[-1].Status == 0x0000
        response = send_raw(assoc, n_get(PUSH, uid), context, timeout=5.0)[-1]
    assert response.Status == 0x0000 and stored(server, PUSH, uid)
    assert refusals(caplog) == []


@pytest.mark.parametrize("sop_class, context", [(PUSH, MPPS), (MPPS, PULL)], ids=["UPS-on-MPPS", "MPPS-on-Pull"])
def test_an_n_get_on_another_sop_class_context_is_0118(server, caplog, sop_class, context):
    uid = generate_uid()
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        assert send_raw(assoc, n_create(sop_class, uid), sop_class, timeout=5.0)[-1].Status == 0x0000
        assert send_raw(assoc, n_get(sop_class, uid), context, timeout=5.0)[-1].Status == 0x0118
    assert len(refusals(caplog)) == 1


def test_a_sop_class_pynetdicom_does_not_know_is_0118_not_an_abort(server, caplog):
    """pynetdicom found no service class for it: an error in the log and the association aborted."""
    request = n_create(IAN, generate_uid())
    request.AffectedSOPClassUID = "1.2.826.0.1.3680043.8.498.1"  # a private SOP class nobody negotiated
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        assert send_raw(assoc, request, IAN, timeout=5.0)[-1].Status == 0x0118
        assert send_raw(assoc, n_create(IAN, generate_uid()), IAN, timeout=5.0)[-1].Status == 0x0000
    [line] = refusals(caplog)
    assert "1.2.826.0.1.3680043.8.498.1 on a presentation context for" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_an_operation_a_sop_class_lacks_on_its_own_context_is_0118_with_its_reason(server, caplog):
    """An N-CREATE with the UPS Pull UID on a Pull context: UPS N-CREATE carries the Push UID."""
    request = n_create(PUSH, generate_uid())
    request.AffectedSOPClassUID = PULL
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        response = send_raw(assoc, request, PULL, timeout=5.0)[-1]
    assert response.Status == 0x0118 and response.ErrorComment == "no N-CREATE for this SOP Class"
    [line] = refusals(caplog)
    assert line.getMessage() == "refused (0118): no N-CREATE is served for Unified Procedure Step - Pull"
    assert line.sop_instance == request.AffectedSOPInstanceUID


def c_find(sop_class: str) -> prim.C_FIND:
    request = prim.C_FIND()
    request.MessageID, request.AffectedSOPClassUID, request.Priority = 13, sop_class, 0
    identifier = Dataset()
    identifier.SOPInstanceUID, identifier.ProcedureStepState = "", "SCHEDULED"
    request.Identifier = BytesIO(encode(identifier, False, True))
    return request


def test_a_c_find_for_another_sop_class_is_0122(server, caplog):
    with caplog.at_level(logging.INFO), association(server.dicom.port) as assoc:
        response = send_raw(assoc, c_find(MPPS), PULL, timeout=5.0)[-1]
        assert response.Status == 0x0122
        # The Push UID on a UPS context is tolerated in a C-FIND too (CC.3.1.1 asks for the negotiated UID).
        assert send_raw(assoc, c_find(PUSH), PULL, timeout=5.0)[-1].Status == 0x0000
        assert send_raw(assoc, c_find(PULL), PULL, timeout=5.0)[-1].Status == 0x0000
    [line] = [r for r in caplog.records if r.name == "workflow.dimse" and r.getMessage().startswith("refused (0122)")]
    assert "C-FIND of Modality Performed Procedure Step SOP Class" in line.getMessage()
