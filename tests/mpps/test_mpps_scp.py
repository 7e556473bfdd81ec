"""The MPPS SCP over real associations, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS
from sqlalchemy import select

from workflow.dimse import response_fields  # noqa: F401
from workflow.dimse.nodelay import NoDelayAE
from workflow.mpps.tables import PerformedStep, PerformedStepInstance, PerformedStepRequest


@pytest.fixture
def assoc(server):
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(MPPS)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    a = ae.associate("127.0.0.1", server.dicom.port, ae_title="WFM")
    assert a.is_established
    yield a
    a.release()


def in_progress(study_uid: str, accession: str = "ACC1") -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study_uid
    step.ReferencedStudySequence = []
    step.AccessionNumber = accession
    step.RequestedProcedureID = "RP1"
    step.RequestedProcedureDescription = "CT head"
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = "CT head"
    step.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT 1"
    ds.PerformedLocation = "Room 1"
    ds.PerformedProcedureStepStartDate = "20261123"
    ds.PerformedProcedureStepStartTime = "090000"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT head"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def completed(series: dict[str, list[str]]) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20261123"
    ds.PerformedProcedureStepEndTime = "091500"
    ds.PerformedSeriesSequence = []
    for series_uid, sop_uids in series.items():
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = "Head"
        item.OperatorsName = ""
        item.SeriesInstanceUID = series_uid
        item.SeriesDescription = ""
        item.RetrieveAETitle = ""
        item.ReferencedImageSequence = []
        for sop in sop_uids:
            ref = Dataset()
            ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ref.ReferencedSOPInstanceUID = sop
            item.ReferencedImageSequence.append(ref)
        item.ReferencedNonImageCompositeSOPInstanceSequence = []
        ds.PerformedSeriesSequence.append(item)
    return ds


def test_mpps_lifecycle_records_the_expected_instances(assoc, server):
    study, uid = generate_uid(), generate_uid()
    status, _ = assoc.send_n_create(in_progress(study), MPPS, uid)
    assert status.Status == 0
    update = Dataset()
    update.PerformedProcedureStepDescription = "CT head without contrast"
    assert assoc.send_n_set(update, MPPS, uid)[0].Status == 0
    expected = {generate_uid(): [generate_uid() for _ in range(3)], generate_uid(): [generate_uid()]}
    assert assoc.send_n_set(completed(expected), MPPS, uid)[0].Status == 0
    with server.engine.connect() as conn:
        step = conn.execute(select(PerformedStep).where(PerformedStep.sop_instance_uid == uid)).one()
        instances = conn.execute(select(PerformedStepInstance.sop_instance_uid)
                                 .where(PerformedStepInstance.performed_step_uid == uid)).scalars().all()
        request = conn.execute(select(PerformedStepRequest).where(PerformedStepRequest.performed_step_uid == uid)).one()
    assert step.status == "COMPLETED" and step.calling_ae_title == "CT1"
    assert sorted(instances) == sorted(sum(expected.values(), []))
    assert (request.study_instance_uid, request.accession_number) == (study, "ACC1")
    again = Dataset()
    again.PerformedProcedureStepDescription = "too late"
    status, _ = assoc.send_n_set(again, MPPS, uid)
    assert status.Status == 0x0110 and status.ErrorID == 0xA710


def test_mpps_refusals(assoc):
    uid = generate_uid()
    bad = in_progress(generate_uid())
    bad.PerformedProcedureStepStatus = "COMPLETED"
    assert assoc.send_n_create(bad, MPPS, uid)[0].Status == 0x0106
    missing = in_progress(generate_uid())
    del missing.PerformedProcedureStepID
    assert assoc.send_n_create(missing, MPPS, uid)[0].Status == 0x0120
    assert assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)[0].Status == 0
    assert assoc.send_n_create(in_progress(generate_uid()), MPPS, uid)[0].Status == 0x0111
    update = Dataset()
    update.PerformedProcedureStepDescription = "x"
    assert assoc.send_n_set(update, MPPS, generate_uid())[0].Status == 0x0112
    not_allowed = Dataset()
    not_allowed.PatientID = "OTHER"
    assert assoc.send_n_set(not_allowed, MPPS, uid)[0].Status == 0x0105
    early = Dataset()
    early.PerformedProcedureStepStatus = "COMPLETED"
    status, _ = assoc.send_n_set(early, MPPS, uid)
    assert status.Status == 0x0121  # final state requirements (end date/time, performed series) unmet
