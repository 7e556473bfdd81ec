"""IAN SCU: builds Instance Availability Notifications from DICOM files and sends them to any IAN SCP.

One IAN per study (PS3.4 R.3.2: an IAN concerns one study), series grouped, each instance with the
given availability and Retrieve AE Title(s). The Referenced Performed Procedure Step Sequence is sent
(Type 2), empty unless a PPS is named.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import InstanceAvailabilityNotification

from workflow.dimse.files import headers
from workflow.dimse.client import AssociationFailed, Peer, association  # noqa: F401  (AssociationFailed: cli)

log = logging.getLogger("workflow.ian_scu")

MPPS_SOP_CLASS_UID = "1.2.840.10008.3.1.2.3.3"
_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]


@dataclass(frozen=True)
class FileInstance:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


def scan(paths: Iterable[str | Path]) -> Iterator[FileInstance]:
    """The instances in the given files and folders (recursively); non-DICOM files are skipped."""
    for file, ds in headers(paths, _TAGS):
        try:
            yield FileInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                               str(ds.SOPInstanceUID), str(ds.SOPClassUID))
        except AttributeError as exc:
            log.warning(f"skipped {file}: not a DICOM instance with study, series and SOP UIDs ({exc})")


URL_PLACEHOLDERS = ("study", "series", "instance")


def url_template_problem(template: str) -> str | None:
    """Why a Retrieve URL template cannot be filled in, or None."""
    import string
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"{exc} (write a literal brace as {{{{ or }}}})"
    unknown = [n for n in names if n not in URL_PLACEHOLDERS]
    if unknown:
        return (f"unknown placeholder {{{unknown[0]}}}; use " + ", ".join(f"{{{n}}}" for n in URL_PLACEHOLDERS))
    return None


def build_ians(instances: Iterable[FileInstance], availability: str, retrieve_ae_titles: list[str],
               retrieve_url: str | None = None, pps_uid: str | None = None) -> list[Dataset]:
    """IAN data sets, one per study. `retrieve_url` may contain {study}, {series} and {instance}."""
    studies: dict[str, dict[str, dict[str, FileInstance]]] = defaultdict(lambda: defaultdict(dict))
    for inst in instances:
        studies[inst.study_instance_uid][inst.series_instance_uid][inst.sop_instance_uid] = inst
    ians = []
    for study_uid, series_map in studies.items():
        ds = Dataset()
        pps = []
        if pps_uid:
            item = Dataset()
            item.ReferencedSOPClassUID = MPPS_SOP_CLASS_UID
            item.ReferencedSOPInstanceUID = pps_uid
            item.PerformedWorkitemCodeSequence = []
            pps.append(item)
        ds.ReferencedPerformedProcedureStepSequence = pps
        ds.StudyInstanceUID = study_uid
        ds.ReferencedSeriesSequence = []
        for series_uid, members in series_map.items():
            series = Dataset()
            series.SeriesInstanceUID = series_uid
            series.ReferencedSOPSequence = []
            for inst in members.values():
                ref = Dataset()
                ref.ReferencedSOPClassUID = inst.sop_class_uid
                ref.ReferencedSOPInstanceUID = inst.sop_instance_uid
                ref.InstanceAvailability = availability
                ref.RetrieveAETitle = retrieve_ae_titles
                if retrieve_url:
                    ref.RetrieveURL = retrieve_url.format(study=study_uid, series=series_uid,
                                                          instance=inst.sop_instance_uid)
                series.ReferencedSOPSequence.append(ref)
            ds.ReferencedSeriesSequence.append(series)
        ians.append(ds)
    return ians


@dataclass(frozen=True)
class SendResult:
    study_instance_uid: str
    sop_instance_uid: str
    instances: int
    status: int | None  # None: no response (association failed)
    error_comment: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and (self.status == 0 or self.status >> 12 == 0xB)


def send_ians(ians: list[Dataset], host: str, port: int, called_ae: str, calling_ae: str = "WFMSCU",
              timeout: float = 30.0) -> list[SendResult]:
    """Send the IANs over one association; each gets its own new SOP Instance UID."""
    with association(Peer(host, port, called_ae, calling_ae, timeout), [InstanceAvailabilityNotification]) as assoc:
        return [_send(assoc, ds) for ds in ians]


def _send(assoc, ds: Dataset) -> SendResult:
    uid = generate_uid()
    count = sum(len(s.ReferencedSOPSequence) for s in ds.ReferencedSeriesSequence)
    status, _ = assoc.send_n_create(ds, InstanceAvailabilityNotification, uid)
    if not status or "Status" not in status:
        return SendResult(ds.StudyInstanceUID, uid, count, None, "no response")
    return SendResult(ds.StudyInstanceUID, uid, count, int(status.Status), status.get("ErrorComment"))
