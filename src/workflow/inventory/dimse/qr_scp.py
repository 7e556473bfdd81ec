"""Inventory Query/Retrieve SCP (PS3.4 JJ) over the inventories `wfm inventory build` made: FIND, and
GET / MOVE of the Inventory SOP instances by SOP Instance UID (Inventory Storage as the SCU of the
sub-operations). So a Sup 223 consumer can use an archive that has no Inventory as if it had one.

Called by the archive's AE title (an association to this server whose Called AE Title is the
archive's, e.g. ORTHANC), FIND answers only that archive's inventories; called by this server's own
AE title, every archive's. Retrieve AE Title in the answers is the title the association called: GET
and MOVE work on either. GET/MOVE identifiers hold SOP Instance UID (one or a list) and no
Query/Retrieve Level (JJ forbids it: A900); UIDs not held make the final status B000 (some sent) or
A702 (none), naming them in Failed SOP Instance UID List. MOVE destinations are the configured
[[remote_ae]] entries (unknown: A801).
"""

from __future__ import annotations

import io
import logging
import time

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import build_context
from pynetdicom.sop_class import InventoryFind, InventoryGet, InventoryMove, InventoryStorage
from sqlalchemy import Engine

from workflow.audit.trail import NoAudit
from workflow.config import Settings
from workflow.dimse.datasets import request_json, status_dataset
from workflow.dimse.dicom_json import DecodeError
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.inventory import store
from workflow.inventory.rules.iod import INVENTORY_STORAGE
from workflow.kernel.ports import Audit
from workflow.kernel.statuses import Status

log = logging.getLogger("workflow.inventory")

FIND, GET, MOVE = str(InventoryFind), str(InventoryGet), str(InventoryMove)
SERVICES = (
    ServiceSpec("Inventory Query/Retrieve Information Model - FIND", FIND, "SCP", "C-FIND"),
    ServiceSpec("Inventory Query/Retrieve Information Model - GET", GET, "SCP",
                "C-GET (C-STORE sub-operations of Inventory Storage on the same association)"),
    ServiceSpec("Inventory Query/Retrieve Information Model - MOVE", MOVE, "SCP",
                "C-MOVE (C-STORE sub-operations of Inventory Storage to a configured [[remote_ae]])"),
)
SUB_OPERATIONS = ServiceSpec("Inventory Storage", INVENTORY_STORAGE, "SCU",
                             "C-STORE (sub-operations of Inventory GET and MOVE)")

PENDING, SUCCESS, CANCEL = 0xFF00, 0x0000, 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
SUB_OPERATIONS_FAILED = 0xA702
SOME_FAILED = 0xB000
UNABLE_TO_PROCESS = 0xC000
UNDECODABLE = Status(IDENTIFIER_DOES_NOT_MATCH, "Failure", "Identifier does not match SOP Class")
ALWAYS_RETURNED = ("SOPClassUID", "SOPInstanceUID", "RetrieveAETitle")


def _values(value) -> list[str]:
    """A keyword's value (`ds.get(keyword)`) as its non-empty strings, whatever its VM."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def _one(identifier: Dataset, keyword: str) -> str:
    found = _values(identifier.get(keyword))
    return found[0] if len(found) == 1 else ""


class InventoryQrScp:
    def __init__(self, engine: Engine, settings: Settings, audit: Audit = NoAudit()) -> None:
        self.engine, self.settings, self.audit = engine, settings, audit

    def routes(self) -> Routes:
        return Routes(offers=SERVICES, uses=(SUB_OPERATIONS,), c_find={FIND: self.find}, c_get={GET: self.get},
                      c_move={MOVE: self.move}, get_storage=(INVENTORY_STORAGE,))

    @staticmethod
    def _called(event) -> str:
        """The Called AE Title the requestor asked for (pynetdicom's acceptor title is always ours)."""
        return str(event.assoc.requestor.primitive.called_ae_title).strip()

    def _archive(self, event) -> str | None:
        called = self._called(event)
        return None if called == self.settings.ae_title else called

    # -- FIND ----------------------------------------------------------------------------------------

    def find(self, event):
        started = time.perf_counter()
        calling = event.assoc.requestor.ae_title
        extra = {"calling_ae": calling, "sop_class": FIND}
        try:
            # Decoded as every SCP here decodes (a value pydicom cannot read, a duplicate element, a VR
            # the dictionary does not allow: refused), before pynetdicom's own reading is used.
            request_json(event.request.Identifier, event)
            identifier = event.identifier
        except (DecodeError, ValueError) as exc:
            comment = f"undecodable identifier: {exc}"
            log.warning(f"Inventory FIND: {comment}", extra={**extra, "status": "A900"})
            yield status_dataset(UNDECODABLE, comment), None
            return
        archive, called = self._archive(event), self._called(event)
        classes = _values(identifier.get("SOPClassUID"))
        if classes and INVENTORY_STORAGE not in classes:
            yield SUCCESS, None
            return
        keys = store.Keys(
            sop_instance_uids=tuple(_values(identifier.get("SOPInstanceUID"))),
            transaction_uid=_one(identifier, "TransactionUID"),
            content_date=_one(identifier, "ContentDate"), content_time=_one(identifier, "ContentTime"),
            strings=tuple((k, _one(identifier, k)) for k in store.STRING_KEYS if _one(identifier, k)),
            total_records=_one(identifier, "TotalNumberOfStudyRecords"), archive_ae=archive)
        try:
            matches = store.audited_find(self.engine, keys, self.audit, identifier.to_json().encode("utf-8"))
        except store.Unmatchable as exc:
            log.warning(f"Inventory FIND: {exc} cannot be matched", extra={**extra, "status": "A900"})
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, self._answer(identifier, match, called)
        log.info(f"Inventory FIND: {len(matches)} match(es)" + (f" for {archive}" if archive else ""),
                 extra={**extra, "status": "0000", "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
        yield SUCCESS, None

    @staticmethod
    def _answer(identifier: Dataset, match: dict, called: str) -> Dataset:
        known = {"SOPClassUID": INVENTORY_STORAGE, "SOPInstanceUID": match["sop_instance_uid"],
                 "ContentDate": match["content_date"], "ContentTime": match["content_time"],
                 "InventoryPurpose": match["purpose"], "InventoryInstanceDescription": match["description"],
                 "InventoryLevel": match["level"], "InventoryCompletionStatus": match["completion"],
                 "TotalNumberOfStudyRecords": match["total_records"],
                 "NumberOfStudyRecordsInInstance": match["records"], "RetrieveAETitle": called}
        answer = Dataset()
        answer.SpecificCharacterSet = "ISO_IR 192"
        for keyword in sorted({e.keyword for e in identifier if e.keyword} | set(ALWAYS_RETURNED)):
            if keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
                continue
            if keyword == "ScopeOfInventorySequence":
                answer.ScopeOfInventorySequence = [Dataset.from_json(item) for item in match["scope"]]
            elif keyword == "TransactionUID":
                answer.TransactionUID = ""  # not made through Inventory Creation
            elif keyword in known:
                setattr(answer, keyword, known[keyword])
            else:
                setattr(answer, keyword, None)  # a key we do not hold: returned empty
        return answer

    # -- GET and MOVE --------------------------------------------------------------------------------

    def _selection(self, identifier: Dataset) -> tuple[int | None, str, list[str], list[str]]:
        """(failure status or None, its comment, UIDs held, UIDs not held)."""
        if "QueryRetrieveLevel" in identifier:
            return IDENTIFIER_DOES_NOT_MATCH, "Query/Retrieve Level shall not be present (PS3.4 JJ)", [], []
        uids = list(dict.fromkeys(_values(identifier.get("SOPInstanceUID"))))
        if not uids:
            return IDENTIFIER_DOES_NOT_MATCH, "SOP Instance UID (one or a list) is required", [], []
        held = store.held(self.engine, uids)
        return None, "", [u for u in uids if u in held], [u for u in uids if u not in held]

    def _send(self, event, operation: str, held: list[str], missing: list[str]):
        started = time.perf_counter()
        sent = 0
        for uid in held:
            if event.is_cancelled:
                yield CANCEL, None
                return
            raw = store.data(self.engine, uid)
            if raw is None:  # removed since the selection
                missing.append(uid)
                continue
            sent += 1
            yield PENDING, dcmread(io.BytesIO(raw))
        log.info(f"Inventory {operation}: {sent} instance(s) sent, {len(missing)} not held",
                 extra={"calling_ae": event.assoc.requestor.ae_title, "sop_class": operation,
                        "status": "0000" if not missing else f"{SOME_FAILED if sent else SUB_OPERATIONS_FAILED:04X}",
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
        if missing:
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = missing
            yield (SOME_FAILED if sent else SUB_OPERATIONS_FAILED), failed

    def _retrieve(self, event, operation: str):
        """What GET and MOVE share once MOVE has its destination: the count, then each instance."""
        failure, comment, held, missing = self._selection(event.identifier)
        if failure is not None:
            log.warning(f"Inventory {operation} refused: {comment}",
                        extra={"calling_ae": event.assoc.requestor.ae_title, "status": f"{failure:04X}"})
            answer = Dataset()
            answer.ErrorComment = comment[:64]
            yield 1  # pynetdicom reads a final status only after a count above 0
            yield failure, answer
            return
        yield len(held) + len(missing)  # the UIDs asked for; those not held fail
        yield from self._send(event, operation, held, missing)

    def get(self, event):
        yield from self._retrieve(event, "C-GET")

    def move(self, event):
        destination = self.settings.remote(str(event.move_destination).strip())
        if destination is None:
            log.warning(f"Inventory C-MOVE refused: no [[remote_ae]] named {event.move_destination!r}",
                        extra={"calling_ae": event.assoc.requestor.ae_title, "status": "A801"})
            yield None, None  # pynetdicom answers A801, Move Destination unknown
            return
        yield destination.host, destination.port, {"contexts": [build_context(InventoryStorage)]}
        yield from self._retrieve(event, "C-MOVE")
