"""Inventory Query/Retrieve (PS3.4 JJ): FIND over the stored Inventory instances, and GET/MOVE of
them by SOP Instance UID.

FIND keys (JJ.2-1): SOP Class UID, SOP Instance UID (one or a list), Transaction UID, Content Date
(single or range), Content Time (single or range), Inventory Purpose, Inventory Instance Description,
Inventory Level, Inventory Completion Status (single value / wild card), Total Number of Study
Records (single value); Scope of Inventory Sequence is returned, universal matching only. Retrieve AE
Title is always returned. Every node of a tree matches on its own attributes, not only roots.
GET/MOVE: the identifier holds SOP Instance UID (one or a list) and no Query/Retrieve Level (JJ
forbids it: A900). UIDs not held make the final status a warning (B000) listing them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset

from refarchive.constants import INVENTORY_STORAGE
from refarchive.faults import Faults
from refarchive.inventory_store import InventoryStore, StoredInventory
from refarchive.matching import Where, add_any, add_date, add_string, values
from refarchive.responses import answer, status

log = logging.getLogger("refarchive.inventory")

_STRING_KEYS = {"TransactionUID": "transaction_uid", "InventoryPurpose": "purpose",
                "InventoryInstanceDescription": "description", "InventoryLevel": "level",
                "InventoryCompletionStatus": "completion"}


def _known(inv: StoredInventory, ae_title: str) -> dict:
    return {"SOPClassUID": INVENTORY_STORAGE, "SOPInstanceUID": inv.sop_instance_uid,
            "TransactionUID": inv.transaction_uid, "ContentDate": inv.content_date, "ContentTime": inv.content_time,
            "InventoryPurpose": inv.purpose, "InventoryInstanceDescription": inv.description,
            "InventoryLevel": inv.level, "InventoryCompletionStatus": inv.completion,
            "TotalNumberOfStudyRecords": inv.total_records, "NumberOfStudyRecordsInInstance": inv.records,
            "RetrieveAETitle": ae_title}


class InventoryQr:
    def __init__(self, store: InventoryStore, faults: Faults, ae_title: str,
                 move_destinations: dict[str, tuple[str, int]]) -> None:
        self.store = store
        self.faults = faults
        self.ae_title = ae_title
        self.move_destinations = move_destinations

    # -- FIND --------------------------------------------------------------------------------------

    def find(self, event) -> Iterator[tuple]:
        identifier = event.identifier
        log.info("Inventory C-FIND from %s", event.assoc.requestor.ae_title)
        classes = values(identifier.get("SOPClassUID"))
        if classes and INVENTORY_STORAGE not in classes:
            yield 0x0000, None
            return
        w = Where()
        add_any(w, "sop_instance_uid", values(identifier.get("SOPInstanceUID")))
        for keyword, column in _STRING_KEYS.items():
            given = values(identifier.get(keyword))
            if len(given) == 1:
                add_string(w, column, given[0])
        add_date(w, "content_date", str(identifier.get("ContentDate") or ""))
        add_date(w, "content_time", str(identifier.get("ContentTime") or ""))
        total = values(identifier.get("TotalNumberOfStudyRecords"))
        if total:
            w.add("total_records = ?", int(total[0]))
        for inv in self.store.find(w):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if self.faults.should_abort():
                log.warning("fault: aborting the association mid Inventory C-FIND")
                event.assoc.abort()
                return
            known = _known(inv, self.ae_title)
            if "ScopeOfInventorySequence" in identifier:
                known["ScopeOfInventorySequence"] = self.store.dataset(inv.sop_instance_uid).get(
                    "ScopeOfInventorySequence", [])
            yield 0xFF00, answer(identifier, known, ("SOPClassUID", "SOPInstanceUID", "RetrieveAETitle"))
        yield 0x0000, None

    # -- GET and MOVE ------------------------------------------------------------------------------

    def _selection(self, identifier: Dataset) -> tuple[Dataset | None, list[str], list[str]]:
        """(failure status or None, UIDs held, UIDs not held)."""
        if "QueryRetrieveLevel" in identifier:
            return status(0xA900, "Query/Retrieve Level shall not be present (PS3.4 JJ)"), [], []
        uids = values(identifier.get("SOPInstanceUID"))
        if not uids:
            return status(0xA900, "SOP Instance UID (one or a list) is required"), [], []
        held = [u for u in uids if self.store.get(u) is not None]
        return None, held, [u for u in uids if u not in held]

    def _send(self, event, held: list[str], missing: list[str]) -> Iterator[tuple]:
        for uid in held:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if self.faults.should_abort():
                log.warning("fault: aborting the association mid retrieve")
                event.assoc.abort()
                return
            yield 0xFF00, self.store.dataset(uid)
        if missing:
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = missing
            yield (0xA702 if not held else 0xB000), failed

    def get(self, event) -> Iterator:
        log.info("Inventory C-GET from %s", event.assoc.requestor.ae_title)
        failure, held, missing = self._selection(event.identifier)
        yield 1 if failure is not None else len(held) + len(missing)
        if failure is not None:
            yield failure, None
            return
        yield from self._send(event, held, missing)

    def move(self, event) -> Iterator:
        destination = self.move_destinations.get(str(event.move_destination).strip())
        log.info("Inventory C-MOVE from %s to %s", event.assoc.requestor.ae_title, event.move_destination)
        if destination is None:
            yield None, None  # pynetdicom answers A801, Move Destination unknown
            return
        yield destination
        failure, held, missing = self._selection(event.identifier)
        yield 1 if failure is not None else len(held) + len(missing)
        if failure is not None:
            yield failure, None
            return
        yield from self._send(event, held, missing)
