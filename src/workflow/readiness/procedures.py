"""Requested procedures of a study, brought up to date inside the readiness transaction that evaluated
the study (so once per burst of IANs, not once per IAN).

Identity: (Study Instance UID, Accession Number, Requested Procedure ID). A study known only from IANs
gets one row with empty Accession Number and Requested Procedure ID; the first source that names a
request for that study fills them in, so the row keeps its history instead of a second one appearing.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy import Connection, bindparam, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from workflow.ian.rules.availability import Availability
from workflow.kernel.json_model import first, items
from workflow.readiness.rules.procedure import ProcedureFacts, advance, target_state
from workflow.ian.tables import Instance
from workflow.mpps.tables import PerformedStep, PerformedStepInstance, PerformedStepRequest
from workflow.readiness.tables import RequestedProcedure
from workflow.ups.tables import Workitem, WorkitemSeqItem

log = logging.getLogger("workflow.procedures")

RP, W, SEQ = RequestedProcedure.__table__, Workitem.__table__, WorkitemSeqItem.__table__
REQUEST_SEQ, STUDY_UID, ACCESSION, PROCEDURE_ID = "0040A370", "0020000D", "00080050", "00401001"


def refresh(conn: Connection, study_uid: str, instances, now: datetime, expected_of=None, online=None,
            not_online_of=None) -> None:
    """Create the study's requested procedures its sources name and move each to the state the facts
    say. `instances`: a callable giving the study's InstanceFacts (read only when an expected set needs
    checking). `expected_of` (a step's SOP Instance UIDs) and `online` (the UIDs of the study's
    instances ONLINE somewhere), when the caller keeps them, save reading and walking the study;
    `not_online_of` (those of a step's instances not ONLINE anywhere, kept as instances change) saves
    comparing the whole expected set with them on every pass."""
    names, steps = _names(conn, study_uid)
    announced = conn.execute(select(exists().where(Instance.__table__.c.study_instance_uid == study_uid))).scalar()
    if announced:
        names.setdefault(("", ""), set()).add("IAN")
    rows = _ensure(conn, study_uid, names, now)
    ready = None
    for row in rows:
        mine = [s for s in steps if _same_request(row, s)]
        done = [s.uid for s in mine if s.status == "COMPLETED"]
        if not_online_of is not None and all(not_online_of(s) is not None for s in done):
            online_expected = any(expected_of(s) for s in done) and not any(not_online_of(s) for s in done)
        else:
            # A step the caller does not know (None: it completed since the caller's read) is read here.
            expected = set().union(*(((expected_of and expected_of(s)) or _expected(conn, s)) for s in done))
            if expected and ready is None:
                ready = online() if online is not None else {
                    i.sop_instance_uid for i in instances() if i.best_availability is Availability.ONLINE}
            online_expected = bool(expected) and expected <= (ready or set())
        facts = ProcedureFacts(frozenset(s.status for s in mine), bool(announced), online_expected)
        triggers = advance(row.state, facts)
        if triggers:
            new = target_state(facts)
            conn.execute(update(RP).where(RP.c.id == row.id).values(state=new, updated_at=now))
            log.info(f"requested procedure {study_uid} / {row.accession_number or '-'} / "
                     f"{row.requested_procedure_id or '-'}: {row.state} -> {new} ({', '.join(triggers)})",
                     extra={"study": study_uid})


def announce(conn: Connection, study_uids: list[str], now: datetime) -> None:
    """Studies known only from IANs, none of whose procedures is known yet: their bare requested
    procedures, created where `refresh` would put them (REQUESTED, moved on by the IANs), in one go."""
    if not study_uids:
        return
    triggers, state = _ANNOUNCED
    conn.execute(_ANNOUNCE[conn.dialect.name], [{"study": s, "state": state, "now": now} for s in study_uids])
    if triggers:
        for study_uid in study_uids:
            log.info(f"requested procedure {study_uid} / - / -: REQUESTED -> {state} ({', '.join(triggers)})",
                     extra={"study": study_uid})


def _announce_statement(dialect):
    return dialect.insert(RP).values(
        study_instance_uid=bindparam("study"), accession_number="", requested_procedure_id="",
        state=bindparam("state"), sources="IAN", created_at=bindparam("now"), updated_at=bindparam("now")
    ).on_conflict_do_nothing(index_elements=[RP.c.study_instance_uid, RP.c.accession_number,
                                             RP.c.requested_procedure_id])


_ANNOUNCE = {"postgresql": _announce_statement(postgresql), "sqlite": _announce_statement(sqlite)}
_ANNOUNCED = (advance("REQUESTED", ProcedureFacts(frozenset(), True, False)),
              target_state(ProcedureFacts(frozenset(), True, False)))  # where IANs alone put a new one


def settled_by_ians(state: str) -> bool:
    """A bare requested procedure of a study known only from IANs is where the IANs put it."""
    return not advance(state, ProcedureFacts(frozenset(), True, False))


class _Step:
    def __init__(self, uid: str, status: str, accession: str, procedure_id: str) -> None:
        self.uid, self.status, self.accession, self.procedure_id = uid, status, accession, procedure_id


def _names(conn: Connection, study_uid: str) -> tuple[dict[tuple[str, str], set[str]], list[_Step]]:
    """(Accession Number, Requested Procedure ID) -> the kinds of source naming it; and the MPPS."""
    names: dict[tuple[str, str], set[str]] = {}
    p, r = PerformedStep.__table__, PerformedStepRequest.__table__
    steps = []
    for uid, status, accession, procedure_id in conn.execute(
            select(p.c.sop_instance_uid, p.c.status, r.c.accession_number, r.c.requested_procedure_id)
            .join(r, r.c.performed_step_uid == p.c.sop_instance_uid).where(r.c.study_instance_uid == study_uid)):
        steps.append(_Step(uid, status, accession or "", procedure_id or ""))
        names.setdefault((accession or "", procedure_id or ""), set()).add("MPPS")
    linked = exists().where(SEQ.c.workitem_uid == W.c.sop_instance_uid, SEQ.c.sequence_tag == REQUEST_SEQ,
                            SEQ.c.key == STUDY_UID, SEQ.c.value == study_uid)
    for text, direct in conn.execute(select(W.c.dataset_json, W.c.study_instance_uid).where(
            or_(W.c.study_instance_uid == study_uid, linked))):
        requests = [q for q in items(json.loads(text), REQUEST_SEQ) if first(q, STUDY_UID) == study_uid]
        for q in requests:
            names.setdefault((first(q, ACCESSION) or "", first(q, PROCEDURE_ID) or ""), set()).add("UPS")
        if not requests and direct == study_uid:
            names.setdefault(("", ""), set()).add("UPS")
    return names, steps


def _ensure(conn: Connection, study_uid: str, names: dict[tuple[str, str], set[str]], now: datetime) -> list:
    rows = {(r.accession_number, r.requested_procedure_id): r
            for r in conn.execute(select(RP).where(RP.c.study_instance_uid == study_uid))}
    specific = [k for k in names if k != ("", "")]
    for key in sorted(specific):
        if key in rows:
            continue
        bare = rows.pop(("", ""), None)
        if bare is not None:  # a study first known from IANs: the request that names it takes that row
            conn.execute(update(RP).where(RP.c.id == bare.id).values(
                accession_number=key[0], requested_procedure_id=key[1], updated_at=now))
        else:
            _insert(conn, study_uid, key, now)
    if ("", "") in names and not specific and ("", "") not in rows:
        _insert(conn, study_uid, ("", ""), now)
    out = []
    for row in conn.execute(select(RP).where(RP.c.study_instance_uid == study_uid).order_by(RP.c.id)):
        kinds = set(filter(None, row.sources.split(","))) | names.get(
            (row.accession_number, row.requested_procedure_id), set()) | names.get(("", ""), set())
        sources = ",".join(k for k in ("UPS", "MPPS", "IAN") if k in kinds)
        if sources != row.sources:
            conn.execute(update(RP).where(RP.c.id == row.id).values(sources=sources))
        out.append(row)
    return out


def _insert(conn: Connection, study_uid: str, key: tuple[str, str], now: datetime, state: str = "REQUESTED",
            sources: str = "") -> None:
    """A new REQUESTED row, unless a concurrent transaction (the readiness worker evaluating the study
    while a workitem N-CREATE does) inserted it first: on PostgreSQL this waits for that one's commit,
    then does nothing, where a plain INSERT would fail the caller's whole request."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(RP).values(
        study_instance_uid=study_uid, accession_number=key[0], requested_procedure_id=key[1], state=state,
        sources=sources, created_at=now, updated_at=now).on_conflict_do_nothing(
        index_elements=[RP.c.study_instance_uid, RP.c.accession_number, RP.c.requested_procedure_id]))


def _same_request(row, step: _Step) -> bool:
    """A step performed this request when what both name agrees (an empty value names anything)."""
    return all(not a or not b or a == b for a, b in ((row.accession_number, step.accession),
                                                      (row.requested_procedure_id, step.procedure_id)))


def _expected(conn: Connection, step_uid: str) -> list[str]:
    i = PerformedStepInstance.__table__
    return list(conn.execute(select(i.c.sop_instance_uid).where(i.c.performed_step_uid == step_uid)).scalars())


def of_study(conn: Connection, study_uid: str) -> list[dict]:
    """The study's requested procedures for `wfm study`."""
    return [{"accession_number": r.accession_number, "requested_procedure_id": r.requested_procedure_id,
             "state": r.state, "sources": r.sources.split(",") if r.sources else []}
            for r in conn.execute(select(RP).where(RP.c.study_instance_uid == study_uid).order_by(RP.c.id))]
