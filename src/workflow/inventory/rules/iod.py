"""The Inventory IOD (PS3.3 A.88.3: General Equipment, Inventory C.38.1, SOP Common), built in one
place: a study record from what an archive answered, and a node (one Inventory SOP instance) from
study records and the nodes it incorporates. Type 2 attributes are always present (empty when
unknown); conditional ones follow their condition; nothing is assembled ad hoc elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from workflow import __version__

INVENTORY_STORAGE = "1.2.840.10008.5.1.4.1.1.201.1"
LEVEL = "INSTANCE"
COMPLETIONS = ("COMPLETE", "PARTIAL", "FAILURE", "CANCELED")
AVAILABILITY = ("ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE")  # best first
MANUFACTURER = "open DICOM workflow manager"
# The files carry wfm's own implementation identity, the one its DICOM face sends (dimse/server.py;
# repeated here because rules import no adapter; tests/inventory checks they agree).
IMPLEMENTATION_CLASS_UID = "2.25.57341232141535019075580653872591262980"


@dataclass(frozen=True)
class InstanceFacts:
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: str = ""
    availability: str = ""


@dataclass(frozen=True)
class SeriesFacts:
    series_instance_uid: str
    modality: str
    series_number: str = ""
    instances: tuple[InstanceFacts, ...] = ()


@dataclass(frozen=True)
class StudyFacts:
    """What a Study Root C-FIND at STUDY level said of a study (strings as the archive gave them)."""

    study_instance_uid: str
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    study_description: str = ""
    accession_number: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    series: tuple[SeriesFacts, ...] = field(default=())


def _worst(values: Iterable[str]) -> str:
    known = [v for v in values if v in AVAILABILITY]
    return max(known, key=AVAILABILITY.index) if known else ""


def study_record(study: StudyFacts, retrieve_ae_title: str, listed_at: datetime) -> Dataset:
    """An item of Inventoried Studies Sequence (C.38.1-1) at INSTANCE level. Retrieve AE Title (1C) is
    the archive's: C-MOVE/C-GET of these instances goes there. Counts are of what was listed."""
    record = Dataset()
    record.StudyInstanceUID = study.study_instance_uid
    record.ModalitiesInStudy = sorted({s.modality for s in study.series if s.modality})
    record.ItemInventoryDateTime = listed_at.strftime("%Y%m%d%H%M%S")
    record.NumberOfStudyRelatedSeries = len(study.series)
    record.NumberOfStudyRelatedInstances = sum(len(s.instances) for s in study.series)
    record.StudyUpdateDateTime = ""  # Type 2: C-FIND does not say when the study last changed
    record.StudyID = study.study_id
    record.StudyDate = study.study_date
    record.StudyTime = study.study_time
    record.StudyDescription = study.study_description
    record.AccessionNumber = study.accession_number
    record.PatientName = study.patient_name
    record.PatientID = study.patient_id
    record.PatientBirthDate = study.patient_birth_date
    record.PatientSex = study.patient_sex
    record.RetrieveAETitle = retrieve_ae_title
    availability = _worst(i.availability for s in study.series for i in s.instances)
    if availability:
        record.InstanceAvailability = availability
    record.InventoriedSeriesSequence = [_series_item(s) for s in sorted(study.series,
                                                                        key=lambda s: s.series_instance_uid)]
    return record


def _series_item(series: SeriesFacts) -> Dataset:
    item = Dataset()
    item.SeriesInstanceUID = series.series_instance_uid
    item.Modality = series.modality or "OT"  # Type 1; an archive that does not say: "other"
    item.SeriesNumber = series.series_number
    availability = _worst(i.availability for i in series.instances)
    if availability:
        item.InstanceAvailability = availability
    instances = []
    for facts in sorted(series.instances, key=lambda i: i.sop_instance_uid):
        instance = Dataset()
        instance.SOPClassUID = facts.sop_class_uid
        instance.SOPInstanceUID = facts.sop_instance_uid
        instance.InstanceNumber = facts.instance_number
        if facts.availability in AVAILABILITY:
            instance.InstanceAvailability = facts.availability
        instances.append(instance)
    item.InventoriedInstancesSequence = instances
    return item


@dataclass(frozen=True)
class NodeHeader:
    """What every node of one inventory shares."""

    content: datetime  # when production started: Content Date and Time
    scope_item: Dataset | None  # the Scope of Inventory item; None: universal
    purpose: str
    description: str
    completion: str
    station_name: str = ""


@dataclass
class NodeRef:
    """A stored node, as a parent references it: its UID, its subtree's record count and children."""

    uid: str
    total: int
    children: list["NodeRef"] = field(default_factory=list)


def reference(node: NodeRef) -> Dataset:
    """An Inventory Reference macro item (C.38.2-3) with the node's own subtree nested."""
    item = Dataset()
    item.ReferencedSOPClassUID = INVENTORY_STORAGE
    item.ReferencedSOPInstanceUID = node.uid
    if node.children:
        item.IncorporatedInventoryInstanceSequence = [reference(c) for c in node.children]
    return item


def node_dataset(uid: str, header: NodeHeader, records: list[Dataset], children: list[NodeRef],
                 created: datetime) -> Dataset:
    """One Inventory SOP instance: `records` are its own study records, `children` the nodes below it
    (each listed with its whole subtree, C.38.1.1.5)."""
    if header.completion not in COMPLETIONS:
        raise ValueError(f"Inventory Completion Status must be one of {COMPLETIONS}")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = created.strftime("%Y%m%d")
    ds.InstanceCreationTime = created.strftime("%H%M%S")
    ds.SOPClassUID = INVENTORY_STORAGE
    ds.SOPInstanceUID = uid
    ds.ContentDate = header.content.strftime("%Y%m%d")
    # To the microsecond: a reconciliation takes it as its cut-off, and an instance announced in the
    # same second would otherwise count as announced after the inventory was taken (not checked).
    ds.ContentTime = header.content.strftime("%H%M%S.%f")
    ds.Manufacturer = MANUFACTURER
    if header.station_name:
        ds.StationName = header.station_name[:16]
    ds.SoftwareVersions = f"wfm {__version__}"
    ds.ScopeOfInventorySequence = [header.scope_item] if header.scope_item is not None else []
    ds.InventoryPurpose = header.purpose
    if header.description:
        ds.InventoryInstanceDescription = header.description
    ds.InventoryLevel = LEVEL
    ds.InventoryCompletionStatus = header.completion
    ds.NumberOfStudyRecordsInInstance = len(records)
    ds.TotalNumberOfStudyRecords = len(records) + sum(c.total for c in children)
    ds.IncorporatedInventoryInstanceSequence = [reference(c) for c in children]
    ds.InventoriedStudiesSequence = records
    return ds


def part10(ds: Dataset) -> bytes:
    """The node as a DICOM file (Explicit VR Little Endian), as kept and as sent."""
    from io import BytesIO

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = f"WFM_{__version__}"[:16]
    ds.file_meta = meta
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
