"""Use cases of the MPPS SCP (PS3.4 Annex F): create and update a performed procedure step, one
transaction each. The step's request items and expected instances are kept as rows for the
readiness tracking that joins on them; a step that becomes final marks its studies (`StudyChanges`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Callable

from pydicom.uid import generate_uid
from sqlalchemy import Connection, Engine, delete, select

from workflow.kernel import statuses
from workflow.kernel.attributes import Rejected, is_uid
from workflow.audit.rules import messages
from workflow.audit.trail import NoAudit
from workflow.kernel import requestor
from workflow.kernel.clock import utcnow
from workflow.kernel.ports import Audit, NoStudyChanges, StudyChanges
from workflow.mpps.rules.procedure_step import (MPPS_SOP_CLASS_UID, MPPSStatus, check_create, decide_create,
                                                 stored_create,
                                  decide_set, expected_instances, merge_set, parse_status, request_keys)
from workflow.kernel.outcome import Outcome
from workflow.mpps.tables import PerformedStep, PerformedStepInstance, PerformedStepRequest

P = PerformedStep.__table__
REQ = PerformedStepRequest.__table__
INST = PerformedStepInstance.__table__
STATUS_TAG = "00400252"


class PerformedStepService:
    def __init__(self, engine: Engine, *, type2_absent: str = "accept", studies: StudyChanges = NoStudyChanges(),
                 audit: Audit = NoAudit(), clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.type2_absent = type2_absent
        self.studies = studies
        self.audit = audit  # Procedure Record of each creation and final state, in its transaction
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    def create(self, uid: str | None, ds: dict, calling_ae: str) -> Outcome:
        if uid is not None and not is_uid(uid):
            return Outcome(statuses.INVALID_ATTRIBUTE_VALUE, comment="SOP Instance UID is not a valid UID")
        try:
            notes = check_create(ds, type2_absent=self.type2_absent)
        except Rejected as exc:
            return Outcome(exc.status, comment=exc.comment, tags=exc.tags)
        assigned = uid is None
        uid = uid or generate_uid()
        ds = stored_create(ds)
        now = self.clock()
        with self.engine.begin() as conn:
            exists = conn.execute(select(P.c.sop_instance_uid).where(P.c.sop_instance_uid == uid)).first()
            decision = decide_create(exists is not None)
            if not decision.accepted:
                return Outcome(decision.status, comment=decision.comment or decision.status.meaning, uid=uid)
            conn.execute(P.insert().values(sop_instance_uid=uid, sop_class_uid=MPPS_SOP_CLASS_UID,
                                           status=MPPSStatus.IN_PROGRESS.value, calling_ae_title=calling_ae,
                                           dataset_json=json.dumps(ds, sort_keys=True), created_at=now,
                                           updated_at=now))
            self._index(conn, uid, ds)
            self._audit(conn, "C", uid, ds, "IN PROGRESS")
        self.audit.committed()
        reply = {"00080018": {"vr": "UI", "Value": [uid]}} if assigned else None
        return Outcome(statuses.SUCCESS, dataset=reply, uid=uid, notes=tuple(notes))

    def set(self, uid: str, modification: dict) -> Outcome:
        now = self.clock()
        with self.engine.begin() as conn:
            stmt = select(P).where(P.c.sop_instance_uid == uid)
            row = conn.execute(stmt.with_for_update() if self._postgres else stmt).first()
            stored = json.loads(row.dataset_json) if row else None
            decision = decide_set(parse_status(row.status) if row else None, modification, stored=stored,
                                  type2_absent=self.type2_absent)
            if not decision.accepted:
                # The rule or requirement broken (decision.text is the state table's cell, not a reason).
                return Outcome(decision.status, comment=decision.comment or decision.status.meaning,
                               tags=decision.tags, uid=uid, error_id=decision.error_id)
            merged = merge_set(stored, modification)
            status = decision.new_status or parse_status(row.status)
            values = dict(status=status.value, dataset_json=json.dumps(merged, sort_keys=True), updated_at=now)
            if status.is_final:
                values["finished_at"] = now
            conn.execute(P.update().where(P.c.sop_instance_uid == uid).values(**values))
            self._index(conn, uid, merged)
            marked = False
            if status.is_final:
                self._audit(conn, "U", uid, merged, status.value)
            if status.is_final:  # a COMPLETED step's Performed Series is the study's expected set
                for study in dict.fromkeys(r["study_instance_uid"] for r in request_keys(merged)
                                           if r.get("study_instance_uid")):
                    self.studies.mark(conn, study, now)
                    marked = True
        if marked:
            self.studies.committed()
        self.audit.committed()
        return Outcome(decision.status, uid=uid, notes=decision.notes)

    def _audit(self, conn: Connection, action: str, uid: str, ds: dict, what: str) -> None:
        studies = [r["study_instance_uid"] for r in request_keys(ds) if r.get("study_instance_uid")]
        self.audit.record(conn, messages.procedure_record(requestor.current(), action, MPPS_SOP_CLASS_UID, uid,
                                                          studies[0] if studies else None, what))

    @staticmethod
    def _index(conn: Connection, uid: str, ds: dict) -> None:
        """Rewrite the step's request and expected-instance rows from its data set."""
        conn.execute(delete(REQ).where(REQ.c.performed_step_uid == uid))
        conn.execute(delete(INST).where(INST.c.performed_step_uid == uid))
        requests = [dict(r, performed_step_uid=uid, item_index=i) for i, r in enumerate(request_keys(ds))
                    if r.get("study_instance_uid")]
        if requests:
            conn.execute(REQ.insert(), requests)
        instances = [dict(performed_step_uid=uid, series_instance_uid=series, sop_class_uid=cls,
                          sop_instance_uid=inst) for series, cls, inst in expected_instances(ds)]
        if instances:
            conn.execute(INST.insert(), instances)
