"""UPS use cases (PS3.4 Annex CC), one transaction each: create, get, set, change state, request
cancel, subscribe / unsubscribe / suspend, find. Every change a subscriber should hear about is
written to the outbox in the same transaction. No pynetdicom here: the same calls serve UPS-RS."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Protocol

from pydicom.uid import generate_uid
from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from workflow.config import Settings
from workflow.kernel import statuses
from workflow.ups.rules import events as ups_events
from workflow.kernel.attributes import Rejected, is_uid
from workflow.kernel.json_model import JsonDataset, first, items, tag_of
from workflow.ups.rules.attributes import (ATTRIBUTE_STATUSES, apply_create_defaults, check_create, check_set,
                                            final_state_unmet, merge_set, with_cancellation, with_state)
from workflow.ups.rules.matching import QueryRejected, parse_query
from workflow.ups.rules import state as st
from workflow.ups.rules.state import (UPS_PUSH_SOP_CLASS_UID, CREATED_WITH_MODIFICATIONS, INVALID_ARGUMENT_VALUE, NO_SUCH_UPS, UPSState, decide_change_state,
                                       decide_create, decide_request_cancel, decide_set, parse_state)
from workflow.ups import subscriptions as subs
from workflow.ups.outbox import enqueue
from workflow.ups.reporting import report
from workflow.kernel.clock import dicom_dt, utcnow
from workflow.audit.rules import messages
from workflow.audit.trail import NoAudit
from workflow.kernel import requestor
from workflow.kernel.outcome import Outcome
from workflow.kernel.ports import Audit
from workflow.kernel.ports import Signal
from workflow.ups.inputs import inputs_of, with_inputs, with_rows
from workflow.ups.index import changed_columns, index_workitem, sequences_changed
from workflow.ups.tables import Workitem, WorkitemSeqItem
from workflow.ups.query import matching_select
from workflow.store.engine import reading

log = logging.getLogger("workflow.ups")
W = Workitem.__table__
SEQ = WorkitemSeqItem.__table__

STATE, READINESS, TXN = tag_of("ProcedureStepState"), tag_of("InputReadinessState"), tag_of("TransactionUID")
SOP_CLASS, SOP_INSTANCE = tag_of("SOPClassUID"), tag_of("SOPInstanceUID")
PROGRESS = tag_of("ProcedureStepProgressInformationSequence")
INPUT_INFORMATION = tag_of("InputInformationSequence")
RECEIVING_AE, DELETION_LOCK = tag_of("ReceivingAE"), tag_of("DeletionLock")
SUBSCRIPTION_KEYS = (RECEIVING_AE, DELETION_LOCK)
UPS_QUERY_SOP_CLASS_UID = "1.2.840.10008.5.1.4.34.6.5"
INPUT_CHUNK = 10  # matches whose Input Information one query reads
# Built once: constructing a statement costs more than running it on a warm connection.
_STORED = (W.c.sop_instance_uid, W.c.procedure_step_state, W.c.transaction_uid, W.c.dataset_json, W.c.created_at)
_LOAD = select(*_STORED).where(W.c.sop_instance_uid == bindparam("uid"))
_UPDATE = update(W).where(W.c.sop_instance_uid == bindparam("_uid"))  # SET: the columns given
RECEIVING_AE_UNKNOWN = statuses.Status(0xC308, "Failure", "Receiving AE-TITLE is Unknown to this SCP")
NO_SUCH_ACTION = statuses.Status(0x0123, "Failure", "No such action")
IDENTIFIER_MISMATCH = statuses.Status(0xA900, "Failure", "Identifier does not match SOP Class")

SERVICE_STATUSES: tuple[tuple[statuses.Status, str], ...] = (
    (statuses.SUCCESS, "The operation was committed (state changes, subscriptions and the events they owe "
                       "in one transaction); for Request Cancel of an IN PROGRESS workitem: the request was "
                       "passed to the subscribers (not that the workitem was canceled)."),
    (st.CREATED_WITH_MODIFICATIONS, "N-CREATE: the SCP changed what the SCU sent (default Worklist Label, or a "
                                    "Modification DateTime or SOP Class UID it replaced)."),
    (st.ALREADY_CANCELED, "Change State to CANCELED, or Request Cancel, on a CANCELED workitem."),
    (st.ALREADY_COMPLETED_WARNING, "Change State to COMPLETED on a COMPLETED workitem, with its Transaction UID."),
    (statuses.INVALID_ATTRIBUTE_VALUE, "Also: a Transaction UID with a value in N-CREATE, items in a "
                                       "sequence that must be created empty, or an N-CREATE for one of the "
                                       "Worklist's well-known UIDs (CC.3.1)."),
    (st.INVALID_ARGUMENT_VALUE, "Change State names no state, an unknown one, or one whose value is not text; "
                                "Subscribe, Unsubscribe or Suspend without Receiving AE, or with one whose "
                                "value is not text; Deletion Lock not TRUE or FALSE; a filtered "
                                "subscription's keys that C-FIND would refuse."),
    (statuses.PROCESSING_FAILURE, "The data set cannot be decoded (Error Comment says why: also an element "
                                  "twice or out of ascending tag order, PS3.5 7.1, or sent with a VR its "
                                  "dictionary entry does not allow, UN excepted), or the database refused the "
                                  "transaction."),
    (statuses.DUPLICATE_SOP_INSTANCE, "N-CREATE for a SOP Instance UID that exists."),
    (NO_SUCH_ACTION, "N-ACTION with an Action Type ID other than 1-5."),
    (st.NO_LONGER_UPDATABLE, "N-SET on a COMPLETED or CANCELED workitem; state changes the table refuses."),
    (st.WRONG_TRANSACTION_UID, "N-SET or Change State without the Transaction UID that locks the workitem "
                               "(a Transaction UID whose value is not text is never the correct one)."),
    (st.ALREADY_IN_PROGRESS, "Change State to IN PROGRESS on an IN PROGRESS workitem."),
    (st.SCHEDULED_ONLY_BY_CREATE, "Change State to SCHEDULED."),
    (st.FINAL_STATE_NOT_MET, "COMPLETED or CANCELED requested while Final State requirements are unmet; "
                             "Error Comment names the first missing attributes."),
    (st.NO_SUCH_UPS, "No workitem with that SOP Instance UID (N-GET, N-SET, N-ACTION); Suspend on a UID "
                     "other than the global subscription instances."),
    (RECEIVING_AE_UNKNOWN, "Subscribe names a Receiving AE that is not a configured `[[remote_ae]]`."),
    (st.CREATE_NOT_SCHEDULED, "N-CREATE with a Procedure Step State other than SCHEDULED."),
    (st.NOT_IN_PROGRESS, "Change State to COMPLETED or CANCELED on a SCHEDULED workitem; N-SET with a "
                         "Transaction UID on a SCHEDULED workitem."),
    (st.ALREADY_COMPLETED, "Request Cancel on a COMPLETED workitem."),
    (IDENTIFIER_MISMATCH, "C-FIND identifier with a malformed range, a bad UID, a sequence key with several "
                          "items or several values outside a UID list, or one that cannot be decoded "
                          "(Error Comment \"undecodable identifier: ...\")."),
)
# Every status a UPS request gets and when, whatever face it came through: the conformance statement's table.
STATUS_CONDITIONS = statuses.conditions(SERVICE_STATUSES[:4], ATTRIBUTE_STATUSES, SERVICE_STATUSES[4:])

# When the SCP cancels a SCHEDULED workitem itself and the requester named no reason code, this one
# satisfies the Final State requirement (X) for the Discontinuation Reason Code Sequence.
UNSPECIFIED_DISCONTINUATION = {"00080100": {"vr": "SH", "Value": ["110513"]},
                               "00080102": {"vr": "SH", "Value": ["DCM"]},
                               "00080104": {"vr": "LO", "Value": ["Discontinued for unspecified reason"]}}


class NewWorkitems(Protocol):
    """Told of a workitem just created (by an SCU or a template), inside its N-CREATE's transaction:
    readiness evaluates it there, so the State Reports it owes commit with it. Returns events written."""

    def workitem_created(self, conn: Connection, uid: str, now: datetime) -> int: ...


class WorklistService:
    def __init__(self, engine: Engine, settings: Settings, *, events: Signal | None = None,
                 new_workitems: NewWorkitems | None = None, audit: Audit = NoAudit(),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.settings = settings
        self.events = events or Signal()  # fired after a commit that wrote event reports: wakes their senders
        self.new_workitems = new_workitems  # evaluates a new workitem in its N-CREATE's transaction
        self.audit = audit  # Procedure Record in the transaction of each change; Query for each search
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        # The load before a change locks the row (PostgreSQL) and reads who may hear of it.
        load = select(*_STORED, subs.candidates_of(W, self._postgres).label("candidates")).where(
            W.c.sop_instance_uid == bindparam("uid"))
        self._load_for_change = load.with_for_update(of=W) if self._postgres else load

    # ------------------------------------------------------------------ helpers

    def _load(self, conn: Connection, uid: str, lock: bool = True):
        """The stored workitem; with `lock`, for a change: its row locked, and `candidates` for `report`."""
        return conn.execute(self._load_for_change if lock else _LOAD, {"uid": uid}).first()

    def _subscribers(self, conn: Connection, uid: str, row) -> list[str]:
        """Who hears of a change to the workitem `row` was loaded for (`_load`, with its candidates):
        asked once a change, after its write, which filtered subscriptions are matched against."""
        return subs.recipients(conn, uid, row.created_at, row.candidates)

    def _write(self, conn: Connection, uid: str, ds: JsonDataset, now: datetime, *, insert: bool = False,
               before: JsonDataset | None = None, transaction_uid: str | None = None, finished: bool = False) -> None:
        """Store the workitem and its matching columns: all of them for a new one (`insert`), else
        only those whose element differs from the stored data set `before`, and its sequence-item
        rows only when a matchable sequence changed."""
        if insert:
            columns, seq_rows = index_workitem(ds)
        else:
            columns = changed_columns(before, ds)
            seq_rows = index_workitem(ds)[1] if sequences_changed(before, ds) else None
        values = dict(columns, dataset_json=json.dumps(ds, sort_keys=True), updated_at=now,
                      transaction_uid=transaction_uid)
        if finished:
            values["finished_at"] = now
        if insert:
            conn.execute(W.insert().values(sop_instance_uid=uid, created_at=now, **values))
        else:
            conn.execute(_UPDATE, {"_uid": uid, **values})
            if seq_rows is None:
                return
            conn.execute(delete(SEQ).where(SEQ.c.workitem_uid == uid))
        if seq_rows:
            conn.execute(SEQ.insert(), [dict(row, workitem_uid=uid) for row in seq_rows])

    def _done(self, written: int, outcome: Outcome) -> Outcome:
        if written:
            self.events.fire()
        self.audit.committed()
        return outcome

    def _audit(self, conn: Connection, action: str, uid: str, ds: JsonDataset, what: str) -> None:
        """The Procedure Record of a change, in its transaction (PS3.15 A.5.3: 110111)."""
        self.audit.record(conn, messages.procedure_record(requestor.current(), action, UPS_PUSH_SOP_CLASS_UID, uid,
                                                          first(ds, tag_of("StudyInstanceUID")), what))

    # ------------------------------------------------------------------ N-CREATE

    def create(self, uid: str | None, ds: JsonDataset) -> Outcome:
        if uid is not None and not is_uid(uid):
            return Outcome(statuses.INVALID_ATTRIBUTE_VALUE, comment="SOP Instance UID is not a valid UID")
        if uid in (subs.GLOBAL_UID, subs.FILTERED_UID):  # PS3.4 CC.3.1: the Worklist's, never a workitem's
            return Outcome(statuses.INVALID_ATTRIBUTE_VALUE, comment=f"SOP Instance UID {uid} is reserved "
                           "(the Worklist's, PS3.4 CC.3.1)", uid=uid)
        try:
            check_create(ds, type2_absent=self.settings.type2_absent)
        except Rejected as exc:
            return Outcome(exc.status, comment=exc.comment, tags=exc.tags)
        now = self.clock()
        assigned = uid is None
        uid = uid or generate_uid()
        ds, coerced = apply_create_defaults(ds, dicom_dt(now), self.settings.default_worklist_label,
                                            sop_instance_uid=uid)
        try:
            with self.engine.begin() as conn:
                decision = decide_create(self._load(conn, uid) is not None)
                if decision.status.code != 0:
                    return Outcome(decision.status, comment="a workitem with this SOP Instance UID exists", uid=uid)
                written = self._insert_new(conn, uid, ds, now)
        except IntegrityError:  # a concurrent N-CREATE of the same UID committed first
            return Outcome(decide_create(True).status, comment="a workitem with this SOP Instance UID exists", uid=uid)
        status = CREATED_WITH_MODIFICATIONS if coerced else statuses.SUCCESS
        reply = {SOP_INSTANCE: {"vr": "UI", "Value": [uid]}} if assigned else None
        return self._done(written, Outcome(status, dataset=reply, uid=uid, notes=tuple(coerced)))

    def _insert_new(self, conn: Connection, uid: str, ds: JsonDataset, now: datetime) -> int:
        """Store a checked new workitem, report it, evaluate its readiness. Returns events written."""
        self._write(conn, uid, ds, now, insert=True)
        self._audit(conn, "C", uid, ds, "created SCHEDULED")
        written = report(conn, uid, now, ups_events.STATE_REPORT, ups_events.state_report(ds), now)
        if ups_events.assignment_changed(None, ds):
            written += report(conn, uid, now, ups_events.ASSIGNED, ups_events.assigned(ds), now)
        if self.new_workitems is not None:
            written += self.new_workitems.workitem_created(conn, uid, now)
        return written

    def create_internal(self, conn: Connection, uid: str, ds: JsonDataset, now: datetime) -> int:
        """A workitem the SCP creates itself (a template), inside the caller's transaction, under the
        same N-CREATE rules (CC.2.5.3). Returns events written; 0 if it exists already (idempotent)."""
        if self._load(conn, uid, lock=False) is not None:
            return 0
        check_create(ds, type2_absent=self.settings.type2_absent)
        ds, _ = apply_create_defaults(ds, dicom_dt(now), self.settings.default_worklist_label, sop_instance_uid=uid)
        return self._insert_new(conn, uid, ds, now)

    # ------------------------------------------------------------------ N-GET

    def get(self, uid: str, tags: list[str] | None) -> Outcome:
        with reading(self.engine) as conn:
            row = self._load(conn, uid, lock=False)
            ds = with_inputs(conn, uid, json.loads(row.dataset_json)) if row else None
        if row is None:
            return Outcome(NO_SUCH_UPS, comment="no such workitem", uid=uid)
        if not tags:
            return Outcome(statuses.SUCCESS, dataset=ds, uid=uid)
        # The lock is never returned (CC.2.7), nor tags that are no attribute of a workitem (`_returnable`);
        # requested attributes the workitem lacks come back empty. Nothing left: a response without a data
        # set (Command Data Set Type 0101), not an empty one the requester would wait for.
        out = {tag: ds.get(tag) or _empty(tag) for tag in tags if _returnable(tag)}
        return Outcome(statuses.SUCCESS, dataset=out or None, uid=uid)

    # ------------------------------------------------------------------ N-SET

    def set(self, uid: str, modification: JsonDataset) -> Outcome:
        txn = first(modification, TXN)
        now = self.clock()
        with self.engine.begin() as conn:
            row = self._load(conn, uid)
            current_state = parse_state(row.procedure_step_state) if row else None
            decision = decide_set(current_state, txn, row.transaction_uid if row else None)
            if decision.status.code != 0:
                return Outcome(decision.status, comment=decision.status.meaning, uid=uid)
            try:
                check_set(modification, current_state)
            except Rejected as exc:
                return Outcome(exc.status, comment=exc.comment, tags=exc.tags, uid=uid)
            before = json.loads(row.dataset_json)
            changes = {k: v for k, v in modification.items() if k != TXN}
            after = merge_set(before, changes, dicom_dt(now))
            self._write(conn, uid, after, now, before=before, transaction_uid=row.transaction_uid)
            self._audit(conn, "U", uid, after, "updated")
            owed = []
            if first(after, READINESS) != first(before, READINESS):
                owed.append((ups_events.STATE_REPORT, ups_events.state_report(after)))
            if after.get(PROGRESS) != before.get(PROGRESS):
                owed.append((ups_events.PROGRESS_REPORT, ups_events.progress_report(after)))
            if ups_events.assignment_changed(before, after):
                owed.append((ups_events.ASSIGNED, ups_events.assigned(after)))
            to = self._subscribers(conn, uid, row) if owed else []
            written = sum(report(conn, uid, row.created_at, kind, event, now, only=to) for kind, event in owed)
        return self._done(written, Outcome(statuses.SUCCESS, uid=uid))

    # ------------------------------------------------------------------ N-ACTION 1: change state

    def change_state(self, uid: str, info: JsonDataset) -> Outcome:
        requested = first(info, STATE)
        txn = first(info, TXN)
        now = self.clock()
        with self.engine.begin() as conn:
            row = self._load(conn, uid)
            current = parse_state(row.procedure_step_state) if row else None
            ds = stored = json.loads(row.dataset_json) if row else {}
            if requested == UPSState.CANCELED.value:
                ds = with_cancellation(ds, dicom_dt(now))  # the SCP fills the Cancellation DateTime
            unmet = final_state_unmet(ds, requested) if row and requested in ("COMPLETED", "CANCELED") else []
            decision = decide_change_state(current, requested or "", txn, row.transaction_uid if row else None,
                                           not unmet)
            if decision.status.category == "Failure":
                comment = (f"final state requirements unmet: {', '.join(unmet)}"
                           if decision.status.code == 0xC304 else decision.status.meaning)
                return Outcome(decision.status, comment=comment, uid=uid)
            if decision.new_state is None:
                return Outcome(decision.status, uid=uid)
            ds = with_state(ds, decision.new_state)
            stored_txn = None if decision.clear_transaction_uid else (txn if decision.store_transaction_uid
                                                                       else row.transaction_uid)
            self._write(conn, uid, ds, now, before=stored, transaction_uid=stored_txn,
                        finished=decision.new_state in (UPSState.COMPLETED, UPSState.CANCELED))
            self._audit(conn, "U", uid, ds, f"state {decision.new_state.value}")
            to = self._subscribers(conn, uid, row) if decision.reports else []
            written = sum(report(conn, uid, row.created_at, ups_events.STATE_REPORT,
                                 ups_events.state_report(ds, state.value), now, only=to)
                          for state in decision.reports)
        return self._done(written, Outcome(decision.status, uid=uid))

    # ------------------------------------------------------------------ N-ACTION 2: request cancel

    def request_cancel(self, uid: str, info: JsonDataset, requesting_ae: str) -> Outcome:
        now = self.clock()
        with self.engine.begin() as conn:
            row = self._load(conn, uid)
            current = parse_state(row.procedure_step_state) if row else None
            decision = decide_request_cancel(current)
            if decision.status.category == "Failure":
                return Outcome(decision.status, comment=decision.status.meaning, uid=uid)
            written = 0
            stored = json.loads(row.dataset_json)
            self._audit(conn, "U", uid, stored, "cancellation requested"
                        + (" and done" if decision.new_state is not None else ""))
            if decision.cancel_requested:
                event = ups_events.cancel_requested(requesting_ae, info)
                written += report(conn, uid, row.created_at, ups_events.CANCEL_REQUESTED, event, now,
                                  only=self._subscribers(conn, uid, row))
            if decision.new_state is not None:
                ds = with_state(_cancelled(stored, info, dicom_dt(now)), decision.new_state)
                self._write(conn, uid, ds, now, before=stored, transaction_uid=None, finished=True)
                to = self._subscribers(conn, uid, row)
                for state in decision.reports:
                    written += report(conn, uid, row.created_at, ups_events.STATE_REPORT,
                                      ups_events.state_report(ds, state.value), now, only=to)
        return self._done(written, Outcome(decision.status, uid=uid))

    # ------------------------------------------------------------------ N-ACTION 3-5: subscriptions

    def subscribe(self, target_uid: str, info: JsonDataset, *, websocket: bool = False) -> Outcome:
        """Subscribe `Receiving AE` to a workitem or the (filtered) global subscription. Over DIMSE the
        Receiving AE must be a configured [[remote_ae]] (events go there by N-EVENT-REPORT); over UPS-RS
        (`websocket`) any AE title may subscribe: its events wait in the outbox for its WebSocket."""
        receiving_ae = _argument(info, RECEIVING_AE)
        lock_text = _argument(info, DELETION_LOCK)
        if not receiving_ae:
            return _no_receiving_ae(receiving_ae)
        if lock_text is None or lock_text.upper() not in ("TRUE", "FALSE"):
            return Outcome(INVALID_ARGUMENT_VALUE, comment="Deletion Lock (0074,1230) must be TRUE or FALSE",
                           tags=(DELETION_LOCK,))
        if not websocket and self.settings.remote(receiving_ae) is None:
            return Outcome(RECEIVING_AE_UNKNOWN, comment=f"Receiving AE {receiving_ae} is not known")
        lock = lock_text.upper() == "TRUE"
        now = self.clock()
        with self.engine.begin() as conn:
            if target_uid in (subs.GLOBAL_UID, subs.FILTERED_UID):
                filter_ = None
                if target_uid == subs.FILTERED_UID:
                    filter_ = {k: v for k, v in info.items() if k not in SUBSCRIPTION_KEYS}
                    try:
                        parse_query(filter_)
                    except QueryRejected as exc:
                        return Outcome(INVALID_ARGUMENT_VALUE, comment=exc.comment, tags=exc.tags[:1])
                subs.subscribe_global(conn, receiving_ae, lock, now, filter_)
                written = self._initial_reports(conn, receiving_ae, filter_, now) if lock else 0
            else:
                row = self._load(conn, target_uid, lock=False)
                if row is None:
                    return Outcome(NO_SUCH_UPS, comment="no such workitem", uid=target_uid)
                subs.subscribe_workitem(conn, receiving_ae, target_uid, lock, now)
                ds = json.loads(row.dataset_json)
                written = report(conn, target_uid, row.created_at, ups_events.STATE_REPORT,
                                     ups_events.state_report(ds), now, only=[receiving_ae])
        return self._done(written, Outcome(statuses.SUCCESS, uid=target_uid))

    def _initial_reports(self, conn: Connection, receiving_ae: str, filter_: dict | None, now: datetime) -> int:
        """A global subscription with a deletion lock gets a State Report for each workitem not yet in
        a final state that it covers (finished ones are already reported)."""
        query = matching_select(parse_query(filter_ or {})).where(
            W.c.procedure_step_state.in_((UPSState.SCHEDULED.value, UPSState.IN_PROGRESS.value)))
        written = 0
        for row in conn.execute(query):
            written += report(conn, row.sop_instance_uid, row.created_at, ups_events.STATE_REPORT,
                                  ups_events.state_report(json.loads(row.dataset_json)), now, only=[receiving_ae])
        return written

    def unsubscribe(self, target_uid: str, info: JsonDataset) -> Outcome:
        receiving_ae = _argument(info, RECEIVING_AE)
        if not receiving_ae:
            return _no_receiving_ae(receiving_ae)
        now = self.clock()
        with self.engine.begin() as conn:
            if target_uid in (subs.GLOBAL_UID, subs.FILTERED_UID):
                subs.unsubscribe_global(conn, receiving_ae, filtered_only=target_uid == subs.FILTERED_UID)
            else:
                if self._load(conn, target_uid, lock=False) is None:
                    return Outcome(NO_SUCH_UPS, comment="no such workitem", uid=target_uid)
                subs.unsubscribe_workitem(conn, receiving_ae, target_uid, now)
        return Outcome(statuses.SUCCESS, uid=target_uid)

    def suspend(self, target_uid: str, info: JsonDataset) -> Outcome:
        receiving_ae = _argument(info, RECEIVING_AE)
        if target_uid not in (subs.GLOBAL_UID, subs.FILTERED_UID):
            return Outcome(NO_SUCH_UPS, comment="suspend applies to the global subscription")
        if not receiving_ae:
            return _no_receiving_ae(receiving_ae)
        with self.engine.begin() as conn:
            subs.suspend_global(conn, receiving_ae, self.clock())
        return Outcome(statuses.SUCCESS, uid=target_uid)

    # ------------------------------------------------------------------ C-FIND

    def find(self, identifier: JsonDataset, cancelled: Callable[[], bool] = lambda: False,
             batch: int = 200, sop_class: str = UPS_QUERY_SOP_CLASS_UID) -> Iterator[JsonDataset]:
        """Matches as DICOM JSON with the identifier's return keys filled; raises QueryRejected. The
        query is audited (Query, 110112) once it is known to be valid."""
        query = parse_query(identifier)
        self.audit.record_now(messages.query(requestor.current(), sop_class,
                                             json.dumps(identifier, sort_keys=True).encode("utf-8")))
        keys = _response_keys(identifier)
        if keys is None:
            return
        stmt = matching_select(query)
        wants_inputs = INPUT_INFORMATION in identifier
        with reading(self.engine) as conn:
            result = conn.execution_options(yield_per=batch).execute(stmt)
            for rows in result.partitions():
                # Inputs for a few matches at a time: one query instead of one per match, while a
                # workitem listing thousands of instances keeps the memory bounded.
                for at in range(0, len(rows), INPUT_CHUNK):
                    chunk = rows[at:at + INPUT_CHUNK]
                    inputs = inputs_of(conn, [r.sop_instance_uid for r in chunk]) if wants_inputs else {}
                    for row in chunk:
                        if cancelled():
                            return
                        ds = json.loads(row.dataset_json)
                        if wants_inputs:
                            ds = with_rows(ds, inputs.get(row.sop_instance_uid, []))
                        yield _return_keys(ds, keys)

    # ------------------------------------------------------------------ retention

    def purge_finished(self) -> int:
        """Delete COMPLETED and CANCELED workitems older than the retention period, unless locked."""
        cutoff = self.clock() - timedelta(hours=self.settings.ups_retention_hours)
        removed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(W.c.sop_instance_uid, W.c.created_at)
                                .where(W.c.finished_at.is_not(None), W.c.finished_at < cutoff)).all()
            for uid, created_at in rows:
                if subs.is_locked(conn, uid, created_at):
                    continue
                conn.execute(delete(SEQ).where(SEQ.c.workitem_uid == uid))
                conn.execute(delete(W).where(W.c.sop_instance_uid == uid))
                removed += 1
        if removed:
            log.info(f"retention: removed {removed} finished workitems")
        return removed

    # ------------------------------------------------------------------ SCP status change

    def status_change(self, status: str) -> int:
        """Queue an SCP Status Change (event type 4) for every subscriber and every remote AE marked
        for it. Returns how many were queued."""
        now = self.clock()
        with self.engine.begin() as conn:
            to = subs.subscribers(conn) + [r.ae_title for r in self.settings.remote_ae if r.status_change]
            written = enqueue(conn, to, subs.GLOBAL_UID, ups_events.SCP_STATUS_CHANGE,
                              ups_events.scp_status_change(status), now)
        return self._done(written, written)


def _cancelled(ds: JsonDataset, info: JsonDataset, now_dt: str) -> JsonDataset:
    """The cancellation the SCP records when it cancels a SCHEDULED workitem itself: Cancellation
    DateTime, the requester's reason and codes (or "unspecified reason"), and contact details."""
    codes = tuple(items(info, tag_of("ProcedureStepDiscontinuationReasonCodeSequence"))) or (
        UNSPECIFIED_DISCONTINUATION,)
    out = with_cancellation(ds, now_dt, reason=first(info, tag_of("ReasonForCancellation")), reason_codes=codes)
    progress = out[PROGRESS]["Value"][0]
    for keyword in ("ContactURI", "ContactDisplayName"):
        if tag_of(keyword) in info:
            progress[tag_of(keyword)] = info[tag_of(keyword)]
    return out


def _argument(info: JsonDataset, tag: str) -> str | None:
    """An N-ACTION argument's text without padding, "" when absent or empty; None when its value is not
    text (the element sent with a VR that decodes to a number or a person name): an invalid value."""
    value = first(info, tag)
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else None


def _no_receiving_ae(receiving_ae: str | None = "") -> Outcome:
    # N-ACTION has no "missing attribute" status (PS3.7 10.1.4.1.10): an absent argument is invalid.
    problem = "missing" if receiving_ae is not None else "is not an AE title"
    return Outcome(INVALID_ARGUMENT_VALUE, comment=f"Receiving AE (0074,1234) {problem}", tags=(RECEIVING_AE,))


_NOT_ATTRIBUTE_GROUPS = frozenset({"0000", "0001", "0002", "0003", "0005", "0007", "FFFE", "FFFF"})


def _returnable(tag: str) -> bool:
    """Whether an N-GET or C-FIND response may hold `tag`: not the Transaction UID (CC.2.7.3, Table
    CC.2.5-3), and no tag that is no attribute of a workitem: command (0000) and file meta (0002) groups,
    items and delimiters (FFFE), the groups PS3.5 7.8.1 keeps out of use, and group lengths (gggg,0000),
    which pydicom would not even write."""
    return tag != TXN and tag[4:] != "0000" and tag[:4] not in _NOT_ATTRIBUTE_GROUPS


def _empty(tag: str) -> dict[str, Any]:
    from pydicom.datadict import dictionary_VR
    try:
        return {"vr": dictionary_VR(int(tag, 16)).split(" or ")[0]}
    except KeyError:
        return {"vr": "UN"}


def _return_keys(ds: JsonDataset, keys: JsonDataset) -> JsonDataset:
    """The return keys (`_response_keys`) filled from the workitem; unknown ones come back empty."""
    out: dict[str, Any] = {}
    for tag, key in keys.items():
        if tag in ds and tag != TXN:
            out[tag] = ds[tag]
        else:
            out[tag] = {"vr": key.get("vr", "UN")}
    return out


def _response_keys(identifier: JsonDataset) -> JsonDataset | None:
    """The keys of the C-FIND identifier a match returns: every `_returnable` one. The Transaction UID is
    never returned with a value; when it is the only key, each match returns it zero-length: a Pending
    response must carry an Identifier (PS3.7 C.4.1.1), which may hold only keys of the request
    (CC.2.8.1.3.2), and one with no element cannot be sent (pynetdicom takes it for an encoding
    failure and answers C312). None when no key at all can be returned (only command, file meta, item
    or group length tags): there are no matching keys, so no matches (CC.2.8.3.1)."""
    keys = {tag: key for tag, key in identifier.items() if _returnable(tag)}
    if keys:
        return keys
    return {TXN: {"vr": "UI"}} if TXN in identifier else None
