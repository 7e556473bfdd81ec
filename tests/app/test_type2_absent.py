"""Interop leniency, one site setting for IAN, MPPS and UPS: an N-CREATE that leaves out Type 2
attributes is accepted and stored with them empty (`type2_absent = "accept"`, the default), or refused
with 0120 naming every absent attribute in the Attribute Identifier List (`"refuse"`)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from testkit.db import test_settings
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import in_progress
from testkit.ups import PUSH, get, ups_association, workitem
from workflow.app import App
from workflow.dimse.nodelay import NoDelayAE

pytestmark = pytest.mark.slow

# What real scheduler integrations leave out (PS3.4 Table CC.2.5-3 Type 2).
UPS_LEFT_OUT = ("IssuerOfPatientID", "OtherPatientIDsSequence", "AdmittingDiagnosesDescription")


@pytest.fixture(scope="module", params=["accept", "refuse"])
def server(request, database_url):
    app = App(test_settings(database_url, type2_absent=request.param))
    app.start()
    yield app
    app.stop()


def lenient_workitem() -> Dataset:
    request = Dataset()
    request.StudyInstanceUID = generate_uid()
    request.AccessionNumber = "A1"
    request.IssuerOfAccessionNumberSequence = []
    request.RequestedProcedureID = "RP1"
    request.RequestedProcedureDescription = "CT head"
    request.RequestedProcedureCodeSequence = []
    # Order Placer / Filler Identifier Sequences (Type 2 inside the item) left out.
    return workitem(**{keyword: ... for keyword in UPS_LEFT_OUT}, ReferencedRequestSequence=[request])


def tags(status: Dataset) -> set[str]:
    listed = status.get("AttributeIdentifierList", [])
    return {f"{int(t):08X}" for t in (listed if listed.__class__.__name__ in ("list", "MultiValue") else [listed])}


def test_ups_n_create_without_type2_attributes(server):
    uid = generate_uid()
    with ups_association(server.dicom.port) as assoc:
        status, _ = assoc.send_n_create(lenient_workitem(), PUSH, uid)
        if server.settings.type2_absent == "refuse":
            assert status.Status == 0x0120
            assert tags(status) == {"00100021", "00101002", "00081080", "00400026", "00400027"}
            assert get(assoc, uid, "ProcedureStepState")[0].Status != 0  # nothing stored
            return
        assert status.Status == 0x0000, status
        got, ds = get(assoc, uid)
    assert got.Status == 0x0000
    for keyword in UPS_LEFT_OUT:  # stored as empty: N-GET returns the attribute without a value
        assert keyword in ds and ds[keyword].is_empty
    request = ds.ReferencedRequestSequence[0]
    assert "OrderPlacerIdentifierSequence" in request and len(request.OrderPlacerIdentifierSequence) == 0


def test_ian_without_its_type2_sequence(server):
    ian = make_ian()
    del ian.ReferencedPerformedProcedureStepSequence
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, ian)
    if server.settings.type2_absent == "refuse":
        assert status.Status == 0x0120 and tags(status) == {"00081111"}
    else:
        assert status.Status == 0x0000


def test_mpps_n_create_without_type2_attributes(server):
    ds = in_progress(generate_uid())
    del ds.PatientBirthDate, ds.ReferencedPatientSequence
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", server.dicom.port, ae_title="WFM")
    try:
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, generate_uid())
    finally:
        assoc.release()
    if server.settings.type2_absent == "refuse":
        assert status.Status == 0x0120 and tags(status) == {"00100030", "00081120"}
    else:
        assert status.Status == 0x0000


def test_a_lone_instance_item_is_not_type2(server):
    """Type 1 stays Type 1 whatever the setting: a Retrieve AE Title left out is 0120 both ways."""
    item = instance_item()
    del item.RetrieveAETitle
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, make_ian(series={generate_uid(): [item]}))
    assert status.Status == 0x0120 and tags(status) == {"00080054"}
