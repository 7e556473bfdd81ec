"""MPPS data sets a modality would send: IN PROGRESS with its scheduled step, then COMPLETED with
its Performed Series."""

from __future__ import annotations

from pydicom.dataset import Dataset


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
