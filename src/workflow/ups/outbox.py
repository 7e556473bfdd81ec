"""The event outbox: N-EVENT-REPORTs owed to subscribers, written in the same transaction as the
change they report, delivered in order per subscriber, retried with capped backoff, and marked
undeliverable only after `event_retry_for` seconds."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Connection, Engine, bindparam, case, func, select, update

from workflow.config import Settings
from workflow.store.at_commit import insert_at_commit
from workflow.store.engine import aware, reading
from workflow.store.wakeups import EVENTS, notify_at_commit
from workflow.ups.tables import OutboxEvent

PENDING, DELIVERED, UNDELIVERABLE = "PENDING", "DELIVERED", "UNDELIVERABLE"
COMMIT_ORDER_LOCK = zlib.crc32(b"wfm-outbox-commit-order") & 0x7FFFFFFF


@dataclass(frozen=True)
class OwedEvent:
    id: int
    receiving_ae: str
    workitem_uid: str
    event_type_id: int
    event: dict[str, Any]
    attempts: int
    created_at: datetime


def enqueue(conn: Connection, recipients: Iterable[str], workitem_uid: str, event_type_id: int,
            event: dict[str, Any], now: datetime) -> int:
    """Write one event per recipient when the caller's transaction commits. Returns how many."""
    rows = [dict(receiving_ae=ae, workitem_uid=workitem_uid, event_type_id=event_type_id,
                 event_json=json.dumps(event, sort_keys=True), status=PENDING, attempts=0,
                 created_at=now, next_attempt_at=now)
            for ae in dict.fromkeys(recipients)]
    # Inserted at COMMIT under the commit-order lock (subscribers get events in the order the changes
    # committed, across workitems; store/at_commit.py says why the lock must be the last one taken).
    insert_at_commit(conn, OutboxEvent.__table__, rows, COMMIT_ORDER_LOCK)
    if rows:  # the senders of every server process on the database wake (PostgreSQL)
        notify_at_commit(conn, EVENTS)
    return len(rows)


class Outbox:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def owed_now(self, now: datetime, batch: int, conn: Connection | None = None
                 ) -> tuple[dict[str, list[OwedEvent]], datetime | None]:
        """The events owed to configured [[remote_ae]] subscribers whose oldest pending event is due (later
        ones wait behind it: order), up to `batch` each in order, and when the first head not due yet
        falls due (None: none waits). One statement: a round of the event sender reads nothing else
        before it sends. On `conn` when given (the sender's own, PostgreSQL)."""
        remotes = [r.ae_title for r in self.settings.remote_ae]
        if not remotes:
            return {}, None
        rows = _rows(self.engine, conn, _OWED_NOW, {"remotes": remotes, "now": now, "batch": batch})
        owed: dict[str, list[OwedEvent]] = {}
        later: datetime | None = None
        for row in rows:
            at = aware(row.head_at)
            if at > now:
                later = min(later or at, at)
            else:
                owed.setdefault(row.receiving_ae, []).append(_owed(row))
        return owed, later

    def by_dimse(self, receiving_ae: str) -> bool:
        """Events for a configured [[remote_ae]] go by DIMSE; any other AE title's wait for its WebSocket."""
        return self.settings.remote(receiving_ae) is not None

    def expire_websocket_events(self, now: datetime) -> int:
        """Events owed to WebSocket subscribers for longer than event_retry_for become UNDELIVERABLE, as
        DIMSE events do after their retries. Returns how many."""
        t = OutboxEvent.__table__
        limit = now - timedelta(seconds=self.settings.event_retry_for)
        remotes = [r.ae_title for r in self.settings.remote_ae]
        expired = (t.c.status == PENDING, t.c.created_at < limit, t.c.receiving_ae.not_in(remotes))
        # Read first: a write transaction with nothing to write still takes SQLite's write lock, and a
        # commit that meets it waits out SQLite's busy back-off (tens of ms): DIMSE delivery slowed 20x.
        with reading(self.engine) as conn:
            if conn.execute(select(t.c.id).where(*expired).limit(1)).first() is None:
                return 0
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(*expired)
                                .values(status=UNDELIVERABLE, last_attempt_at=now,
                                        last_error="not delivered over its WebSocket within event_retry_for")
                                ).rowcount

    def pending_for(self, receiving_ae: str, limit: int = 100, conn: Connection | None = None) -> list[OwedEvent]:
        return [_owed(r) for r in _rows(self.engine, conn, _PENDING_FOR, {"ae": receiving_ae, "limit": limit})]

    def next_due(self, *, dimse: bool = True) -> datetime | None:
        """When the next event of the channel falls due (DIMSE retries wait; WebSocket ones are due as
        soon as their socket is there)."""
        t = OutboxEvent.__table__
        remotes = [r.ae_title for r in self.settings.remote_ae]
        channel = t.c.receiving_ae.in_(remotes) if dimse else t.c.receiving_ae.not_in(remotes)
        with reading(self.engine) as conn:
            value = conn.execute(select(t.c.next_attempt_at).where(t.c.status == PENDING, channel)
                                 .order_by(t.c.next_attempt_at).limit(1)).scalar_one_or_none()
        return aware(value) if value else None

    def delivered(self, event_id: int, now: datetime, conn: Connection | None = None) -> None:
        values = {"event_id": event_id, "now": now}
        if conn is not None:  # the event sender's own (PostgreSQL, autocommitting): committed
            conn.execute(_DELIVERED, values)
            return
        with self.engine.begin() as conn:
            conn.execute(_DELIVERED, values)

    def failed(self, event: OwedEvent, error: str, now: datetime) -> str:
        """Record a failed attempt; back off, or give up after event_retry_for. Returns the new status."""
        s = self.settings
        attempts = event.attempts + 1
        delay = min(s.event_retry_max_interval, s.event_retry_initial * 2 ** (attempts - 1))
        give_up = now - aware(event.created_at) >= timedelta(seconds=s.event_retry_for)
        status = UNDELIVERABLE if give_up else PENDING
        t = OutboxEvent.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == event.id).values(
                status=status, attempts=attempts, last_attempt_at=now, last_error=error[:2000],
                next_attempt_at=now + timedelta(seconds=delay)))
        return status

    def retry_undeliverable(self, receiving_ae: str, now: datetime) -> int:
        """An operator's retry: a subscriber's UNDELIVERABLE events are owed again, due now, in their
        original order (their ids), with a new retry period from now. Returns how many."""
        t = OutboxEvent.__table__
        with self.engine.begin() as conn:
            return conn.execute(update(t).where(t.c.receiving_ae == receiving_ae, t.c.status == UNDELIVERABLE)
                                .values(status=PENDING, attempts=0, next_attempt_at=now, created_at=now)).rowcount

    def backlog(self) -> int:
        """Events still owed (for the metrics)."""
        t = OutboxEvent.__table__
        with reading(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(t).where(t.c.status == PENDING)).scalar_one()

    def listing(self, include_delivered: bool = False) -> list[dict[str, Any]]:
        t = OutboxEvent.__table__
        query = select(t).order_by(t.c.id)
        if not include_delivered:
            query = query.where(t.c.status != DELIVERED)
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
        return [{"id": r.id, "workitem_uid": r.workitem_uid, "event_type_id": r.event_type_id,
                 "subscriber": r.receiving_ae, "status": r.status, "attempts": r.attempts,
                 "created_at": _iso(r.created_at), "next_attempt_at": _iso(r.next_attempt_at),
                 "last_error": r.last_error} for r in rows]


def _rows(engine: Engine, conn: Connection | None, query, params: dict[str, Any]) -> list:
    if conn is not None:
        return conn.execute(query, params).all()
    with reading(engine) as own:
        return own.execute(query, params).all()


# The event sender's statements, built once: building one costs more than running it (owed_now 0.8 ms
# of Python against 0.3 ms executed on PostgreSQL), and a round runs them while the claim's answer is
# on its way out.
_T = OutboxEvent.__table__
_BY_SUBSCRIBER = dict(partition_by=_T.c.receiving_ae, order_by=_T.c.id)
_RANKED = select(_T, func.row_number().over(**_BY_SUBSCRIBER).label("n"),
                 func.first_value(_T.c.next_attempt_at, type_=_T.c.next_attempt_at.type).over(**_BY_SUBSCRIBER)
                 .label("head_at")
                 ).where(_T.c.status == PENDING, _T.c.receiving_ae.in_(bindparam("remotes", expanding=True))).subquery()
# A subscriber whose head waits for its retry time gives its head only (its time).
_DUE = _RANKED.c.head_at <= bindparam("now", type_=_T.c.next_attempt_at.type)
_OWED_NOW = (select(_RANKED).where(_RANKED.c.n <= case((_DUE, bindparam("batch")), else_=1))
             .order_by(_RANKED.c.receiving_ae, _RANKED.c.id))
_PENDING_FOR = (select(_T).where(_T.c.status == PENDING, _T.c.receiving_ae == bindparam("ae"))
                .order_by(_T.c.id).limit(bindparam("limit")))
_DELIVERED = (update(_T).where(_T.c.id == bindparam("event_id"))
              .values(status=DELIVERED, attempts=_T.c.attempts + 1,
                      last_attempt_at=bindparam("now", type_=_T.c.last_attempt_at.type), last_error=None))


def _owed(row) -> OwedEvent:
    return OwedEvent(row.id, row.receiving_ae, row.workitem_uid, row.event_type_id,
                     json.loads(row.event_json), row.attempts, row.created_at)


def _iso(at: datetime | None) -> str | None:
    return aware(at).isoformat().replace("+00:00", "Z") if at else None
