"""Storage SCP: every storage SOP class pynetdicom knows, plus Inventory Storage.

Ordinary instances become a holdings row (metadata only: the pixel data is not kept). Inventory
instances are the archive's own business and are kept whole, findable by Inventory FIND.
"""

from __future__ import annotations

import logging

from refarchive.constants import INVENTORY_STORAGE
from refarchive.holdings import Holdings, Instance
from refarchive.inventory_store import InventoryStore
from refarchive.responses import status

log = logging.getLogger("refarchive.storage")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class StorageScp:
    def __init__(self, holdings: Holdings, store: InventoryStore) -> None:
        self.holdings = holdings
        self.store = store

    def handle(self, event):
        if str(event.context.abstract_syntax) == INVENTORY_STORAGE:
            meta = self.store.put_received(event.encoded_dataset(include_meta=True))
            log.info("stored Inventory %s from %s", meta.sop_instance_uid, event.assoc.requestor.ae_title)
            return 0x0000
        ds = event.dataset
        sop_uid = str(ds.get("SOPInstanceUID") or event.request.AffectedSOPInstanceUID or "")
        missing = [k for k, v in (("StudyInstanceUID", ds.get("StudyInstanceUID")),
                                  ("SeriesInstanceUID", ds.get("SeriesInstanceUID")), ("SOPInstanceUID", sop_uid))
                   if not v]
        if missing:
            return status(0xA900, f"missing {', '.join(missing)}")
        text = lambda keyword: str(ds.get(keyword) or "")  # noqa: E731
        self.holdings.add_instances([Instance(
            sop_instance_uid=sop_uid, series_uid=text("SeriesInstanceUID"), study_uid=text("StudyInstanceUID"),
            sop_class_uid=str(ds.get("SOPClassUID") or event.request.AffectedSOPClassUID),
            instance_number=_int(ds.get("InstanceNumber")), series_number=_int(ds.get("SeriesNumber")),
            modality=text("Modality") or "OT", study_date=text("StudyDate"), study_time=text("StudyTime"),
            accession_number=text("AccessionNumber"), study_id=text("StudyID"),
            study_description=text("StudyDescription"), patient_id=text("PatientID"),
            patient_name=text("PatientName"), patient_birth_date=text("PatientBirthDate"),
            patient_sex=text("PatientSex"))])
        return 0x0000
