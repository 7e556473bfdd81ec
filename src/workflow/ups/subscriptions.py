"""Who hears about a workitem: subscriptions per workitem, global and filtered global (PS3.4 CC.2.3),
suspension, opt-outs, and deletion locks. All queries run inside the caller's transaction."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, literal_column, or_, select, update

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


def _covering(uid, created_at) -> tuple:
    """The WHERE clauses of the subscriptions that may cover a workitem (FILTERED ones still to be
    matched), for bound parameters or the columns of a workitem row."""
    optout = S.alias("optout")  # its own name: inside a SELECT of subscription rows it must not correlate
    opted_out = select(optout.c.receiving_ae).where(optout.c.kind == OPTOUT, optout.c.workitem_uid == uid
                                                    ).correlate_except(optout)
    return (or_(and_(S.c.kind == WORKITEM, S.c.workitem_uid == uid), and_(_ANY_GLOBAL, _covers_new(created_at))),
            S.c.receiving_ae.not_in(opted_out))


# Built once: every change to a workitem asks.
_RECIPIENTS = select(S.c.receiving_ae, S.c.kind, S.c.filter_json).where(
    *_covering(bindparam("uid"), bindparam("created_at")))


def candidates_of(workitem, postgres: bool):
    """A column for a SELECT of `workitem` rows: the subscriptions that may cover each, as a JSON array of
    [AE, kind, filter]. The load that locks a workitem for a change reads them with it, a round trip
    fewer on PostgreSQL than asking after the change (`recipients(..., candidates)`)."""
    if postgres:  # json_agg of no rows is NULL
        listed = func.coalesce(func.json_agg(func.json_build_array(S.c.receiving_ae, S.c.kind, S.c.filter_json)),
                               literal_column("'[]'::json"))
    else:
        listed = func.json_group_array(func.json_array(S.c.receiving_ae, S.c.kind, S.c.filter_json))
    return select(listed).where(*_covering(workitem.c.sop_instance_uid, workitem.c.created_at)).scalar_subquery()


def recipients(conn: Connection, workitem_uid: str, created_at: datetime, candidates=None) -> list[str]:
    """Receiving AEs subscribed to this workitem, in a stable order; `candidates`: what `candidates_of`
    read with the workitem in this transaction (else they are read here)."""
    if candidates is None:
        rows = conn.execute(_RECIPIENTS, {"uid": workitem_uid, "created_at": created_at}).all()
    else:
        rows = json.loads(candidates) if isinstance(candidates, str) else candidates
    out = []
    for ae, kind, filter_json in sorted(rows, key=lambda r: (r[0], r[1])):
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
