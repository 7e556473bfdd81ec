"""Storage SCP for Inventory Storage (PS3.4 GG.3): where an archive delivers the Inventory instances a
reconciliation asked it to C-MOVE to this server. The encoded data set is kept as received (never
decoded here: an inventory of a million instances is tens of megabytes) and committed before the
Success status goes back."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from sqlalchemy import Engine

from workflow.audit.trail import NoAudit
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.kernel.ports import Audit
from workflow.reconcile import received as received_inventories
from workflow.reconcile.dimse.services import CLIENT_SERVICES
from workflow.reconcile.dimse.sop_classes import INVENTORY_STORAGE

log = logging.getLogger("workflow.inventory")
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


# Reconciliation: Inventory instances an archive C-MOVEs to this AE.
SERVICE = ServiceSpec("Inventory Storage", INVENTORY_STORAGE, "SCP", "C-STORE")


class InventoryStorageScp:
    def __init__(self, engine: Engine, audit: Audit = NoAudit()) -> None:
        self.engine = engine
        self.audit = audit

    def routes(self) -> Routes:
        return Routes(offers=(SERVICE,), uses=CLIENT_SERVICES, c_store={INVENTORY_STORAGE: self.c_store})

    def c_store(self, event) -> int:
        started = time.perf_counter()
        request = event.request
        uid, sop_class = str(request.AffectedSOPInstanceUID or ""), str(request.AffectedSOPClassUID or "")
        extra = {"calling_ae": event.assoc.requestor.ae_title, "sop_class": sop_class, "sop_instance": uid}
        if sop_class != INVENTORY_STORAGE or not uid:
            log.warning("C-STORE refused: only Inventory Storage instances with a SOP Instance UID are kept",
                        extra={**extra, "status": f"{CANNOT_UNDERSTAND:04X}"})
            return CANNOT_UNDERSTAND
        data = request.DataSet.getvalue()
        try:
            received_inventories.store(self.engine, uid, event.assoc.requestor.ae_title,
                                       str(event.context.transfer_syntax), data, datetime.now(timezone.utc),
                                       self.audit)
        except Exception:  # noqa: BLE001 - the archive is told, and may send again
            log.exception("C-STORE of an Inventory instance could not be stored",
                          extra={**extra, "status": f"{OUT_OF_RESOURCES:04X}"})
            return OUT_OF_RESOURCES
        log.info(f"Inventory instance received ({len(data)} bytes)",
                 extra={**extra, "status": "0000", "ms": round((time.perf_counter() - started) * 1000, 1)})
        return 0x0000
