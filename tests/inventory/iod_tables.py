"""The Inventory IOD's module tables (PS3.3 A.88.3-1, C.38.1-1, C.38.2-3; 2024c, see
/work/shared/spec/INVENTORY.md) as data, and a checker: Debian's dicom3tools (2022) does not know the
Inventory IOD, so its attribute rules are checked here. Types: "1" present with a value, "2" present
(may be empty), "1C"/"2C" required as wfm's INSTANCE-level inventories always meet the condition,
"3" optional. An attribute outside the tables is an error too."""

from __future__ import annotations

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

INSTANCE = {"SOPClassUID": "1", "SOPInstanceUID": "1", "InstanceNumber": "2", "InstanceAvailability": "3"}
SERIES = {"SeriesInstanceUID": "1", "Modality": "1", "SeriesNumber": "2", "InstanceAvailability": "3",
          "InventoriedInstancesSequence": ("2C", INSTANCE)}
STUDY = {"StudyInstanceUID": "1", "ModalitiesInStudy": "2", "ItemInventoryDateTime": "1",
         "NumberOfStudyRelatedSeries": "2", "NumberOfStudyRelatedInstances": "2", "StudyUpdateDateTime": "2",
         "StudyID": "2", "StudyDate": "2", "StudyTime": "2", "StudyDescription": "2", "AccessionNumber": "2",
         "PatientName": "2", "PatientID": "2", "PatientBirthDate": "2", "PatientSex": "2",
         "RetrieveAETitle": "1C",  # C-MOVE/C-GET of the instances is possible at the archive
         "InstanceAvailability": "3", "InventoriedSeriesSequence": ("2C", SERIES)}
REFERENCE: dict = {"ReferencedSOPClassUID": "1", "ReferencedSOPInstanceUID": "1"}
REFERENCE["IncorporatedInventoryInstanceSequence"] = ("3", REFERENCE)  # 1C: when the node has children
NODE = {
    # SOP Common
    "SOPClassUID": "1", "SOPInstanceUID": "1", "SpecificCharacterSet": "1C", "InstanceCreationDate": "3",
    "InstanceCreationTime": "3",
    # General Equipment
    "Manufacturer": "2", "StationName": "3", "SoftwareVersions": "3",
    # Inventory
    "ContentDate": "1", "ContentTime": "1", "ScopeOfInventorySequence": ("2", None), "InventoryPurpose": "2",
    "InventoryInstanceDescription": "3", "InventoryLevel": "1", "InventoryCompletionStatus": "1",
    "NumberOfStudyRecordsInInstance": "1", "TotalNumberOfStudyRecords": "1",
    "IncorporatedInventoryInstanceSequence": ("2", REFERENCE), "InventoriedStudiesSequence": ("2", STUDY),
}
ENUMERATED = {"InventoryLevel": {"STUDY", "SERIES", "INSTANCE"},
              "InventoryCompletionStatus": {"COMPLETE", "FAILURE", "CANCELED", "PARTIAL"},
              "InstanceAvailability": {"ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE"},
              "ReferencedSOPClassUID": {"1.2.840.10008.5.1.4.1.1.201.1"}}


def problems(ds: Dataset, table: dict = NODE, where: str = "") -> list[str]:
    found = []
    for element in ds:
        if element.keyword not in table:
            found.append(f"{where}{element.keyword or element.tag}: not in the Inventory IOD")
        elif element.VR != dictionary_VR(element.tag):
            found.append(f"{where}{element.keyword}: VR {element.VR}, the dictionary says {dictionary_VR(element.tag)}")
    for keyword, rule in table.items():
        kind, items = (rule if isinstance(rule, tuple) else (rule, None))
        present = keyword in ds
        if kind in ("1", "2", "1C", "2C") and not present:
            found.append(f"{where}{keyword}: Type {kind}, absent")
            continue
        if not present:
            continue
        value = ds[keyword].value
        if kind in ("1", "1C") and (value is None or value == "" or value == []):
            found.append(f"{where}{keyword}: Type {kind}, empty")
        if keyword in ENUMERATED and value not in (None, ""):
            if str(value) not in ENUMERATED[keyword]:
                found.append(f"{where}{keyword}: {value!r} is not one of {sorted(ENUMERATED[keyword])}")
        if items is not None:
            for n, item in enumerate(value):
                found += problems(item, items, f"{where}{keyword}[{n}].")
    return found


def subtree_uids(item: Dataset) -> set[str]:
    out = set()
    for ref in item.get("IncorporatedInventoryInstanceSequence", []):
        out.add(ref.ReferencedSOPInstanceUID)
        out |= subtree_uids(ref)
    return out
