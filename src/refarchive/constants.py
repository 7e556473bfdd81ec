"""UIDs, enumerated values and seeded-UID rules shared by the reference archive's modules."""

from __future__ import annotations

from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pynetdicom.sop_class import (
    InventoryCreation,
    InventoryFind,
    InventoryGet,
    InventoryMove,
    InventoryStorage,
    StorageManagementInstance,
    StudyRootQueryRetrieveInformationModelFind,
)

INVENTORY_STORAGE = str(InventoryStorage)  # 1.2.840.10008.5.1.4.1.1.201.1
INVENTORY_FIND = str(InventoryFind)  # .201.2
INVENTORY_MOVE = str(InventoryMove)  # .201.3
INVENTORY_GET = str(InventoryGet)  # .201.4
INVENTORY_CREATION = str(InventoryCreation)  # .201.5
STORAGE_MANAGEMENT_INSTANCE = str(StorageManagementInstance)  # .201.1.1, the well-known instance
STUDY_ROOT_FIND = str(StudyRootQueryRetrieveInformationModelFind)
REPOSITORY_QUERY = "1.2.840.10008.5.1.4.1.1.201.6"  # Study Root FIND, ordered and resumable
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

IMPLEMENTATION_CLASS_UID = PYDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION_NAME = "REFARCHIVE_1"

# Seeded UIDs are "<root>.<study>[.<series>[.<instance>]]", numbered from 1, so a test can compute
# them without asking the archive. The root sits under pydicom's organisation root, in an arc that
# generate_uid() (one long random number after the root) never produces.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498.7305"

# Instance Availability, from most to least available. A study or series takes the value of its
# least available member (C.38.1), so the holdings store the rank and aggregate with MAX().
AVAILABILITY = ("ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE")

LEVELS = ("STUDY", "SERIES", "INSTANCE")
COMPLETION_STATUSES = ("COMPLETE", "FAILURE", "CANCELED", "PARTIAL")

# Reason for Removal Code Sequence, DCID 7031: (code value, scheme, meaning).
REJECTED_FOR_QUALITY = ("113001", "DCM", "Rejected for Quality Reasons")
REJECTED_FOR_PATIENT_SAFETY = ("113037", "DCM", "Rejected for Patient Safety Reasons")
DATA_RETENTION_EXPIRED = ("113039", "DCM", "Data Retention Policy Expired")


def study_uid(root: str, study: int) -> str:
    return f"{root}.{study}"


def series_uid(root: str, study: int, series: int) -> str:
    return f"{root}.{study}.{series}"


def instance_uid(root: str, study: int, series: int, instance: int) -> str:
    return f"{root}.{study}.{series}.{instance}"
