"""MPPS SCU: what a modality tells any MPPS SCP about the DICOM files it made (PS3.4 F.7), one
Performed Procedure Step per study: N-CREATE IN PROGRESS (patient, study, accession, modality and
start taken from the files), then N-SET COMPLETED (or DISCONTINUED) naming every series and instance
in the Performed Series Sequence (images in Referenced Image Sequence, other objects in Referenced
Non-Image Composite SOP Instance Sequence)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from workflow.dimse.client import Client, Step, logged, reply
from workflow.dimse.files import headers

log = logging.getLogger("workflow.scu")

MPPS = str(ModalityPerformedProcedureStep)
STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                  "StudyDate", "StudyTime", "StudyDescription", "Modality")
SERIES_KEYWORDS = ("SeriesDescription", "ProtocolName", "OperatorsName", "PerformingPhysicianName")
_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", *STUDY_KEYWORDS,
         *SERIES_KEYWORDS]


@dataclass
class PerformedSeries:
    header: Dataset  # the first file's series attributes
    instances: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> SOP Class UID


@dataclass
class PerformedStudy:
    uid: str
    header: Dataset  # the first file's patient and study attributes
    series: dict[str, PerformedSeries] = field(default_factory=dict)

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series.values())


def read_studies(paths: Iterable[str | Path]) -> list[PerformedStudy]:
    """The studies in the given files and folders, series and instances grouped; files without study,
    series and SOP UIDs are skipped with a warning."""
    studies: dict[str, PerformedStudy] = {}
    for file, ds in headers(paths, _TAGS):
        uids = [str(ds.get(k) or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        if not all(uids):
            log.warning(f"skipped {file}: not a DICOM instance with study, series and SOP UIDs")
            continue
        study = studies.setdefault(uids[0], PerformedStudy(uids[0], ds))
        series = study.series.setdefault(uids[1], PerformedSeries(ds))
        series.instances[uids[2]] = str(ds.get("SOPClassUID") or "")
    return list(studies.values())


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "")


def in_progress(study: PerformedStudy, station_ae: str, pps_id: str, started: datetime) -> Dataset:
    """The N-CREATE: every Type 1 and 2 attribute of Table F.7.2-1, status IN PROGRESS."""
    head = study.header
    step = Dataset()
    step.StudyInstanceUID = study.uid
    step.ReferencedStudySequence = []
    step.AccessionNumber = _text(head, "AccessionNumber")
    step.RequestedProcedureID = ""
    step.RequestedProcedureDescription = _text(head, "StudyDescription")
    step.ScheduledProcedureStepID = ""
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProtocolCodeSequence = []
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = [step]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID"):
        setattr(ds, keyword, _text(head, keyword))
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = pps_id
    ds.PerformedStationAETitle = station_ae
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = _text(head, "StudyDescription")
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = _text(head, "Modality") or "OT"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def final(study: PerformedStudy, ended: datetime, status: str = "COMPLETED") -> Dataset:
    """The N-SET that ends the step, with the Performed Series Sequence of every file read."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
    ds.PerformedSeriesSequence = [_series_item(uid, series) for uid, series in study.series.items()]
    return ds


def _series_item(series_uid: str, series: PerformedSeries) -> Dataset:
    head = series.header
    item = Dataset()
    item.PerformingPhysicianName = _text(head, "PerformingPhysicianName")
    # Protocol Name is Type 1 here, and optional in most images: the series description stands in.
    item.ProtocolName = _text(head, "ProtocolName") or _text(head, "SeriesDescription") or "unknown"
    item.OperatorsName = _text(head, "OperatorsName")
    item.SeriesInstanceUID = series_uid
    item.SeriesDescription = _text(head, "SeriesDescription")
    item.RetrieveAETitle = ""
    item.ReferencedImageSequence = []
    item.ReferencedNonImageCompositeSOPInstanceSequence = []
    for sop_uid, sop_class in series.instances.items():
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_uid
        is_image = "Image" in UID(sop_class).name
        (item.ReferencedImageSequence if is_image else item.ReferencedNonImageCompositeSOPInstanceSequence).append(ref)
    return item


class MppsClient(Client):
    """One association to an MPPS SCP."""

    abstract_syntaxes = (MPPS,)

    def create(self, ds: Dataset, uid: str) -> Step:
        step = Step(f"MPPS N-CREATE {uid}", reply(*self.assoc.send_n_create(ds, MPPS, uid)))
        return logged(step, self.peer, MPPS, uid)

    def set(self, uid: str, ds: Dataset) -> Step:
        step = Step(f"MPPS N-SET {ds.get('PerformedProcedureStepStatus', '')} {uid}".replace("  ", " "),
                    reply(*self.assoc.send_n_set(ds, MPPS, uid)))
        return logged(step, self.peer, MPPS, uid)

    def perform(self, study: PerformedStudy, station_ae: str, status: str = "COMPLETED",
                pps_id: str | None = None) -> tuple[str, list[Step]]:
        """N-CREATE IN PROGRESS then, if accepted, the N-SET to `status`: (the MPPS UID, its steps)."""
        uid = generate_uid()
        now = datetime.now()
        steps = [self.create(in_progress(study, station_ae, pps_id or now.strftime("%y%m%d%H%M%S"), now), uid)]
        if steps[0].answer.ok:
            steps.append(self.set(uid, final(study, datetime.now(), status)))
        return uid, steps
