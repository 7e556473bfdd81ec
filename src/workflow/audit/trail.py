"""The audit trail: each audit message is written as a row in the transaction of the change it describes
(or in its own, for an access or a refusal), so nothing audited is lost when the audit repository is
down; the sender (audit/sender.py) drains the rows to the repository in order."""

from __future__ import annotations

import logging
import socket
import threading
import zlib
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from workflow.audit.refusals import Held, RefusalLimit
from workflow.audit.rules import messages
from workflow.audit.rules.messages import AuditMessage, Code, Source, to_xml
from workflow.audit.tables import AuditRecord
from workflow.config import Settings
from workflow.kernel.requestor import Requestor
from workflow.store.at_commit import insert_at_commit
from workflow.store.engine import aware, reading
from workflow.store.wakeups import AUDIT, notify_at_commit

log = logging.getLogger("workflow.audit")
A = AuditRecord.__table__
PENDING, SENT = "PENDING", "SENT"
ORDER_LOCK = zlib.crc32(b"wfm-audit-commit-order") & 0x7FFFFFFF


class AuditTrail:
    """`record(conn, message)` inside the caller's transaction; `record_now(message)` in its own. With no
    `audit_repository` configured nothing is recorded."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.enabled = bool(settings.audit_repository)
        self.source = Source(settings.audit_source_id or settings.ae_title, settings.audit_enterprise_site_id,
                             settings.ae_title, socket.gethostname())
        self.wake = threading.Event()  # set after a commit that wrote records: the sender drains them
        self.refusals = RefusalLimit(settings.refusals_per_minute, self._summarise)

    def refused(self, kind: Code, who: Requestor, *records: AuditMessage) -> bool:
        """A refusal of `who`: its `records` written (each in its own transaction), and True for the caller
        to log it, unless `who.address` had `refusals_per_minute` refusals of this kind this minute: then
        it is only counted (the count is told when the minute ends) and False."""
        if not self.refusals.admit((kind, who.address, who.face)):
            return False
        for message in records:
            self.record_now(message)
        return True

    def _summarise(self, key, held: Held) -> None:
        kind, address, face = key
        detail = (f"{held.count} more refusals ({kind.meaning}) from {address or 'an unknown address'} between "
                  f"{held.first:%Y-%m-%dT%H:%M:%S}Z and {held.last:%Y-%m-%dT%H:%M:%S}Z, past "
                  f"{self.refusals.per_minute} a minute: counted, not told one by one")
        log.warning(detail, extra={"peer": address})
        self.record_now(messages.security_alert(kind, Requestor("", address, face), detail))

    def record(self, conn: Connection, message: AuditMessage) -> None:
        if not self.enabled:
            return
        # Inserted at COMMIT under the commit-order lock, so ids follow commit order (as the UPS event
        # outbox; store/at_commit.py says why the lock must be the last a transaction takes).
        insert_at_commit(conn, A, [dict(created_at=message.at, event=message.name[:64],
                                        message_xml=to_xml(message, self.source), status=PENDING, attempts=0)],
                         ORDER_LOCK)
        notify_at_commit(conn, AUDIT)  # another process's sender on PostgreSQL hears of it at once

    def committed(self) -> None:
        if self.enabled:
            self.wake.set()

    def record_now(self, message: AuditMessage) -> None:
        """In a transaction of its own (an access, a refusal, the server's own activity). A failure to
        write it is logged, never raised: the request it describes is answered anyway."""
        if not self.enabled:
            return
        try:
            with self.engine.begin() as conn:
                self.record(conn, message)
            self.committed()
        except Exception:  # noqa: BLE001 - logged with the message's content
            log.exception(f"audit record not written: {message.name}")

    def listing(self, include_sent: bool = False, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(A.c.id, A.c.created_at, A.c.event, A.c.status, A.c.attempts, A.c.sent_at, A.c.last_error)
        if not include_sent:
            query = query.where(A.c.status == PENDING)
        with reading(self.engine) as conn:
            rows = conn.execute(query.order_by(A.c.id).limit(limit)).all()
        return [{"id": r.id, "created_at": _iso(r.created_at), "event": r.event, "status": r.status,
                 "attempts": r.attempts, "sent_at": _iso(r.sent_at), "last_error": r.last_error} for r in rows]

    def backlog(self) -> int:
        with reading(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(A).where(A.c.status == PENDING)).scalar_one()


class NoAudit:
    """For a room used on its own (a tool, a test): nothing is recorded."""

    enabled = False

    def record(self, conn: Connection, message: AuditMessage) -> None:
        pass

    def committed(self) -> None:
        pass

    def record_now(self, message: AuditMessage) -> None:
        pass

    def refused(self, kind: Code, who: Requestor, *records: AuditMessage) -> bool:
        return True


def _iso(at) -> str | None:
    return aware(at).isoformat().replace("+00:00", "Z") if at else None
