"""Inventory instances that arrive at this server's Storage SCP (an archive's C-MOVE sub-operations)
and the reconciliation waiting for them. The Storage SCP stores each one in its own transaction
before it answers Success; the reconciliation takes them out by SOP Instance UID."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select

from workflow.audit.rules import messages
from workflow.audit.trail import NoAudit
from workflow.kernel import requestor
from workflow.kernel.ports import Audit
from workflow.store.engine import reading
from workflow.reconcile.inventory_tables import ReceivedInventory

R = ReceivedInventory.__table__
log = logging.getLogger("workflow.inventory")
# An Inventory instance C-MOVEd to us that no reconciliation took within this long was orphaned by one
# that died (a live run takes each within its network timeout).
UNTAKEN_KEPT = timedelta(hours=24)


def store(engine: Engine, sop_instance_uid: str, calling_ae: str, transfer_syntax: str, data: bytes,
          now: datetime, audit: Audit = NoAudit()) -> None:
    """Keep one received instance (a second copy of the same UID replaces the first); its Import is
    audited in the same transaction."""
    with engine.begin() as conn:
        audit.record(conn, messages.imported(requestor.current(), messages.INVENTORY, sop_instance_uid, None, 1))
        conn.execute(delete(R).where(R.c.sop_instance_uid == sop_instance_uid))
        conn.execute(R.insert().values(sop_instance_uid=sop_instance_uid, calling_ae_title=calling_ae,
                                       transfer_syntax_uid=transfer_syntax, received_at=now, size=len(data),
                                       dataset=data))
    audit.committed()


def take(engine: Engine, sop_instance_uid: str) -> tuple[str, bytes] | None:
    """(transfer syntax, encoded data set) of a received instance, removed from the table; None if
    it has not arrived."""
    with engine.begin() as conn:
        row = conn.execute(select(R.c.transfer_syntax_uid, R.c.dataset)
                           .where(R.c.sop_instance_uid == sop_instance_uid)).first()
        if row is None:
            return None
        conn.execute(delete(R).where(R.c.sop_instance_uid == sop_instance_uid))
    return row.transfer_syntax_uid, bytes(row.dataset)


def wait(engine: Engine, sop_instance_uid: str, timeout: float, every: float = 0.05) -> tuple[str, bytes] | None:
    """`take`, polling until the instance arrives or `timeout` seconds pass. A C-MOVE's success
    response comes after its sub-operations, so a caller normally finds it on the first look."""
    deadline = time.monotonic() + timeout
    while True:
        got = take(engine, sop_instance_uid)
        if got is not None or time.monotonic() >= deadline:
            return got
        time.sleep(every)


def purge(engine: Engine, now: datetime) -> int:
    """Housekeeping: remove instances nobody took within UNTAKEN_KEPT (a reconciliation that died, or an
    archive sending unasked). Returns how many."""
    with engine.begin() as conn:
        removed = conn.execute(delete(R).where(R.c.received_at < now - UNTAKEN_KEPT)).rowcount
    if removed:
        log.info(f"retention: removed {removed} received Inventory instances no reconciliation took")
    return removed


def present(engine: Engine) -> list[str]:
    with reading(engine) as conn:
        return list(conn.execute(select(R.c.sop_instance_uid)).scalars())

