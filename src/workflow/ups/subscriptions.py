"""Who hears about a workitem: subscriptions per workitem, global and filtered global (PS3.4 CC.2.3),
suspension, opt-outs, and deletion locks. All queries run inside the caller's transaction."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, delete, exists, or_, select, update

from workflow.ups.rules.matching import parse_query
from workflow.ups.tables import Subscription, Workitem
from workflow.ups.query import matching_select

WORKITEM, GLOBAL, FILTERED, OPTOUT = "WORKITEM", "GLOBAL", "FILTERED", "OPTOUT"
GLOBAL_UID = "1.2.840.10008.5.1.4.34.5"
FILTERED_UID = "1.2.840.10008.5.1.4.34.5.1"

S = Subscription.__table__


# Two comparisons, not in_(): an IN list is rendered anew at every execution (~30 us a change).
_ANY_GLOBAL = or_(S.c.kind == GLOBAL, S.c.kind == FILTERED)


def _covers_new(created_at):
    """A global subscription covers workitems created before it was suspended."""
    return or_(S.c.suspended_at.is_(None), S.c.suspended_at > created_at)


def _recipients_query():
    uid, created_at = bindparam("uid"), bindparam("created_at")
    opted_out = select(S.c.receiving_ae).where(S.c.kind == OPTOUT, S.c.workitem_uid == uid)
    return select(S.c.receiving_ae, S.c.kind, S.c.filter_json).where(
        or_(and_(S.c.kind == WORKITEM, S.c.workitem_uid == uid),
            and_(_ANY_GLOBAL, _covers_new(created_at))),
        S.c.receiving_ae.not_in(opted_out),
    ).order_by(S.c.receiving_ae)


_RECIPIENTS = _recipients_query()  # built once: every change to a workitem asks


def recipients(conn: Connection, workitem_uid: str, created_at: datetime) -> list[str]:
    """Receiving AEs subscribed to this workitem, in a stable order."""
    rows = conn.execute(_RECIPIENTS, {"uid": workitem_uid, "created_at": created_at}).all()
    out = []
    for ae, kind, filter_json in rows:
        if kind == FILTERED and not _matches(conn, workitem_uid, filter_json):
            continue
        out.append(ae)
    return list(dict.fromkeys(out))


def _matches(conn: Connection, workitem_uid: str, filter_json: str | None) -> bool:
    query = parse_query(json.loads(filter_json or "{}"))
    stmt = matching_select(query).where(Workitem.__table__.c.sop_instance_uid == workitem_uid)
    return conn.execute(select(exists(stmt.subquery()))).scalar()


def is_locked(conn: Connection, workitem_uid: str, created_at: datetime) -> bool:
    """A deletion lock holds the workitem when any subscriber covering it asked for one."""
    locks = conn.execute(
        select(S.c.receiving_ae, S.c.kind, S.c.filter_json).where(
            S.c.deletion_lock.is_(True),
            or_(and_(S.c.kind == WORKITEM, S.c.workitem_uid == workitem_uid),
                and_(_ANY_GLOBAL, _covers_new(created_at))))
    ).all()
    return any(kind != FILTERED or _matches(conn, workitem_uid, f) for _, kind, f in locks)


def subscribe_workitem(conn: Connection, receiving_ae: str, workitem_uid: str, lock: bool, now: datetime) -> None:
    conn.execute(delete(S).where(S.c.receiving_ae == receiving_ae, S.c.workitem_uid == workitem_uid,
                                 S.c.kind.in_((WORKITEM, OPTOUT))))
    conn.execute(S.insert().values(receiving_ae=receiving_ae, workitem_uid=workitem_uid, kind=WORKITEM,
                                   deletion_lock=lock, created_at=now))


def subscribe_global(conn: Connection, receiving_ae: str, lock: bool, now: datetime,
                     filter_: dict | None = None) -> None:
    kind = FILTERED if filter_ is not None else GLOBAL
    conn.execute(delete(S).where(S.c.receiving_ae == receiving_ae, S.c.kind == kind))
    conn.execute(S.insert().values(receiving_ae=receiving_ae, kind=kind, deletion_lock=lock, created_at=now,
                                   filter_json=json.dumps(filter_, sort_keys=True) if filter_ is not None else None))


def unsubscribe_workitem(conn: Connection, receiving_ae: str, workitem_uid: str, now: datetime) -> None:
    """Drop the workitem subscription; a global subscriber also opts out of this one workitem."""
    conn.execute(delete(S).where(S.c.receiving_ae == receiving_ae, S.c.workitem_uid == workitem_uid))
    has_global = conn.execute(select(exists().where(
        S.c.receiving_ae == receiving_ae, S.c.kind.in_((GLOBAL, FILTERED))))).scalar()
    if has_global:
        conn.execute(S.insert().values(receiving_ae=receiving_ae, workitem_uid=workitem_uid, kind=OPTOUT,
                                       created_at=now))


def unsubscribe_global(conn: Connection, receiving_ae: str, filtered_only: bool) -> int:
    """Unsubscribe from the global (every subscription and lock of that AE) or the filtered global
    subscription. Returns how many subscriptions went."""
    stmt = delete(S).where(S.c.receiving_ae == receiving_ae)
    if filtered_only:
        stmt = stmt.where(S.c.kind == FILTERED)
    return conn.execute(stmt).rowcount


def suspend_global(conn: Connection, receiving_ae: str, now: datetime) -> int:
    """Stop covering workitems created from now on; existing ones stay subscribed."""
    return conn.execute(update(S).where(S.c.receiving_ae == receiving_ae, S.c.kind.in_((GLOBAL, FILTERED)),
                                        S.c.suspended_at.is_(None)).values(suspended_at=now)).rowcount


def subscribers(conn: Connection) -> list[str]:
    return list(conn.execute(select(S.c.receiving_ae).where(S.c.kind != OPTOUT).distinct()
                             .order_by(S.c.receiving_ae)).scalars())
