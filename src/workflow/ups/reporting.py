"""The event reports a change to a workitem owes (PS3.4 CC.2.4): written to the outbox in the
transaction of the change, for the workitem's subscribers (or only those named)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from workflow.kernel.json_model import JsonDataset
from workflow.ups import subscriptions
from workflow.ups.outbox import enqueue


def report(conn: Connection, uid: str, created_at: datetime, event_type: int, event: JsonDataset,
           now: datetime, only: list[str] | None = None) -> int:
    """Write one event per recipient; returns how many (the caller fires its events signal after the
    commit when any)."""
    to = only if only is not None else subscriptions.recipients(conn, uid, created_at)
    return enqueue(conn, to, uid, event_type, event, now)
