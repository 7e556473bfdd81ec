"""Requests pynetdicom would leave unanswered (the peer waiting until its own timeout) are answered: an
operation this server never serves gets 0211 (Unrecognized Operation), and a request without a command
element PS3.7 requires aborts its association; neither leaves a traceback in the log."""

from __future__ import annotations

import logging
import time
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import dimse_primitives as prim

from testkit.dimse import send_raw
from testkit.ups import PUSH, ups_association, workitem
from pynetdicom.dsutils import encode

pytestmark = pytest.mark.slow


def n_delete():
    request = prim.N_DELETE()
    request.RequestedSOPClassUID, request.RequestedSOPInstanceUID = PUSH, generate_uid()
    return request


def n_event_report():
    request = prim.N_EVENT_REPORT()
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, request.EventTypeID = PUSH, generate_uid(), 1
    return request


def c_store_on_ups():
    request = prim.C_STORE()
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, request.Priority = PUSH, generate_uid(), 0
    request.DataSet = BytesIO(encode(workitem(), False, True))
    return request


@pytest.mark.parametrize("make", [n_delete, n_event_report, c_store_on_ups], ids=["N-DELETE", "N-EVENT-REPORT",
                                                                                  "C-STORE"])
def test_an_operation_never_served_is_answered_0211(server, caplog, make):
    request = make()
    request.MessageID = 7
    with caplog.at_level(logging.WARNING), ups_association(server.dicom.port) as assoc:
        response = send_raw(assoc, request, PUSH, timeout=5.0)[-1]
    assert response is not None and type(response) is type(request), "no response: the peer waited"
    assert response.Status == 0x0211 and response.MessageIDBeingRespondedTo == 7
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_request_without_a_required_command_element_aborts_its_association(server, caplog):
    request = prim.N_ACTION()
    request.MessageID, request.RequestedSOPClassUID, request.ActionTypeID = 8, PUSH, 1  # no SOP Instance UID
    state = Dataset()
    state.ProcedureStepState = "IN PROGRESS"
    request.ActionInformation = BytesIO(encode(state, False, True))
    context = None
    with caplog.at_level(logging.WARNING), ups_association(server.dicom.port) as assoc:
        context = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == PUSH)
        assoc.dimse.send_msg(request, context)
        deadline = time.monotonic() + 5
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.01)
        assert assoc.is_aborted, "the association was left waiting"
    assert any("without a command element PS3.7 requires" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
