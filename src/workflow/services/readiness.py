"""Readiness: IANs, MPPS and new workitems drive each SCHEDULED workitem's Input Information and
Input Readiness State, as the site's policies say. Runs inside the transaction of the change that
caused it, so the State Report it owes is in the outbox when that change commits."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, or_, select

from workflow.domain.availability import Availability
from workflow.domain.json_model import first, items
from workflow.domain.policy import (Facts, InstanceFacts, PolicySet, StudyFacts, Template, WorkitemFacts, decide,
                                    evaluate)
from workflow.store.engine import reading
from workflow.store.models import Instance, InstanceLocation, Notification
from workflow.store.mpps_models import PerformedStep, PerformedStepInstance, PerformedStepRequest
from workflow.store.readiness_models import ReadinessTimer, WorkitemInput
from workflow.store.ups_models import Workitem, WorkitemSeqItem

W, SEQ = Workitem.__table__, WorkitemSeqItem.__table__
INPUT, TIMER = WorkitemInput.__table__, ReadinessTimer.__table__
REQUEST_SEQ, STUDY_UID, ACCESSION = "0040A370", "0020000D", "00080050"
WORKITEM_CODES, CODE_VALUE, CODE_SCHEME = "00404018", "00080100", "00080102"
MODALITY, PROCEDURE_CODES, PPS_DESCRIPTION = "00080060", "00081032", "00400254"


class ReadinessService:
    def __init__(self, engine: Engine, policies: PolicySet, worklist) -> None:
        self.engine = engine
        self.policies = policies
        self.worklist = worklist  # applies the decision: rows, state, outbox

    # ------------------------------------------------------------------ triggers

    def study_changed(self, conn: Connection, study_uid: str, now: datetime) -> int:
        """Re-evaluate every SCHEDULED workitem of the study (by its Study Instance UID or a Referenced
        Request item). Returns how many events were written."""
        written = self._apply_templates(conn, study_uid, now) if self.policies.templates else 0
        linked = exists().where(SEQ.c.workitem_uid == W.c.sop_instance_uid, SEQ.c.sequence_tag == REQUEST_SEQ,
                                SEQ.c.key == STUDY_UID, SEQ.c.value == study_uid)
        rows = conn.execute(select(W).where(W.c.procedure_step_state == "SCHEDULED",
                                            or_(W.c.study_instance_uid == study_uid, linked))
                            .order_by(W.c.sop_instance_uid)).all()
        return written + sum(self._evaluate(conn, row, study_uid, now) for row in rows)

    def _apply_templates(self, conn: Connection, study_uid: str, now: datetime) -> int:
        """Workitems that templates create for a study matching their conditions: one per study and
        template (a deterministic SOP Instance UID makes a second creation a no-op)."""
        facts = self._study_facts(conn, study_uid)
        written = 0
        for template in self.policies.templates_for(facts):
            ds = template_workitem(template, study_uid, template.start_at(now))
            written += self.worklist.create_internal(conn, template.workitem_uid(study_uid), ds, now)
        return written

    @staticmethod
    def _study_facts(conn: Connection, study_uid: str) -> StudyFacts:
        inst, note = Instance.__table__, Notification.__table__
        p, r = PerformedStep.__table__, PerformedStepRequest.__table__
        classes = frozenset(conn.execute(select(inst.c.sop_class_uid).where(
            inst.c.study_instance_uid == study_uid).distinct()).scalars())
        callers = frozenset(conn.execute(select(note.c.calling_ae_title).where(
            note.c.study_instance_uid == study_uid).distinct()).scalars())
        modalities, codes, descriptions = set(), set(), []
        for text in conn.execute(select(p.c.dataset_json).join(r, r.c.performed_step_uid == p.c.sop_instance_uid)
                                 .where(r.c.study_instance_uid == study_uid)).scalars():
            step = json.loads(text)
            if first(step, MODALITY):
                modalities.add(first(step, MODALITY))
            codes |= {(first(c, CODE_VALUE), first(c, CODE_SCHEME)) for c in items(step, PROCEDURE_CODES)}
            descriptions += [d for d in (first(step, PPS_DESCRIPTION),) if d]
        return StudyFacts(study_uid, frozenset(modalities), classes, callers, frozenset(codes),
                          " ".join(descriptions) or None)

    def workitem_created(self, conn: Connection, uid: str, now: datetime) -> int:
        row = conn.execute(select(W).where(W.c.sop_instance_uid == uid)).first()
        studies = _studies_of(json.loads(row.dataset_json), row.study_instance_uid)
        return sum(self._evaluate(conn, row, study, now) for study in studies[:1])

    def fire_due_timers(self, now: datetime) -> int:
        """Settle timers that are due (they live in the database, so a restart loses none)."""
        with reading(self.engine) as conn:
            due = conn.execute(select(TIMER.c.workitem_uid, TIMER.c.study_instance_uid)
                               .where(TIMER.c.due_at <= now)).all()
        written = 0
        for uid, study in due:
            with self.engine.begin() as conn:
                conn.execute(delete(TIMER).where(TIMER.c.workitem_uid == uid))
                row = conn.execute(select(W).where(W.c.sop_instance_uid == uid)).first()
                if row is not None and row.procedure_step_state == "SCHEDULED":
                    written += self._evaluate(conn, row, study, now)
        return written

    # ------------------------------------------------------------------ evaluation

    def explain(self, uid: str, now: datetime) -> dict[str, Any] | None:
        """Why a workitem is or is not READY: the policy, the expected set, what is available, what is
        missing, the pending timer. Read-only."""
        with reading(self.engine) as conn:
            row = conn.execute(select(W).where(W.c.sop_instance_uid == uid)).first()
            if row is None:
                return None
            ds = json.loads(row.dataset_json)
            studies = _studies_of(ds, row.study_instance_uid)
            timer = conn.execute(select(TIMER.c.due_at).where(TIMER.c.workitem_uid == uid)).scalar_one_or_none()
            out: dict[str, Any] = {"workitem_uid": uid, "procedure_step_state": row.procedure_step_state,
                                   "input_readiness_state": row.input_readiness_state, "studies": studies,
                                   "settle_timer_due_at": _iso(timer)}
            if not studies:
                out["reason"] = "the workitem names no study (Study Instance UID or Referenced Request Sequence)"
                return out
            policy, facts = self._facts(conn, row, ds, studies[0], now)
            if policy is None:
                out["reason"] = "no policy concerns this workitem for its study"
                return out
            ev = evaluate(policy, facts)
        out.update(policy=policy.name, evaluated_readiness=ev.readiness.value,
                   expected=sorted(facts.expected) if facts.expected is not None else None,
                   available=[i.instance.sop_instance_uid for i in ev.inputs], missing=list(ev.missing),
                   not_available=list(ev.not_available), reasons=list(ev.reasons),
                   settle_due_at=_iso(ev.settle_due_at),
                   note=("IN PROGRESS and final workitems are not changed by readiness"
                         if row.procedure_step_state != "SCHEDULED" else None))
        return out

    def _evaluate(self, conn: Connection, row, study_uid: str, now: datetime) -> int:
        ds = json.loads(row.dataset_json)
        policy, facts = self._facts(conn, row, ds, study_uid, now)
        if policy is None or _declared_ready(row, facts):
            return 0
        ev = evaluate(policy, facts)
        conn.execute(delete(TIMER).where(TIMER.c.workitem_uid == row.sop_instance_uid))
        if ev.settle_due_at is not None:
            conn.execute(TIMER.insert().values(workitem_uid=row.sop_instance_uid, study_instance_uid=study_uid,
                                               due_at=ev.settle_due_at))
        decision = decide(policy, row.procedure_step_state, row.input_readiness_state, ev)
        if decision is None:
            return 0
        return self.worklist.apply_readiness(conn, row, decision, now, study_uid)

    def _facts(self, conn: Connection, row, ds: dict, study_uid: str, now: datetime):
        accessions = self._mpps_accessions(conn, study_uid)
        policy = self.policies.policy_for(_workitem_facts(row, ds), study_uid, accessions)
        if policy is None:
            return None, None
        listed = frozenset(conn.execute(select(INPUT.c.sop_instance_uid)
                                        .where(INPUT.c.workitem_uid == row.sop_instance_uid)).scalars())
        last_ian = conn.execute(select(func.max(Notification.__table__.c.received_at))
                                .where(Notification.__table__.c.study_instance_uid == study_uid)).scalar()
        facts = Facts(expected=self._expected(conn, study_uid), instances=tuple(self._instances(conn, study_uid)),
                      listed=listed, last_ian_at=_aware(last_ian), now=now)
        return policy, facts

    @staticmethod
    def _expected(conn: Connection, study_uid: str) -> frozenset[str] | None:
        """The union of the Performed Series of the study's COMPLETED MPPS; None when it has none."""
        p, r, i = PerformedStep.__table__, PerformedStepRequest.__table__, PerformedStepInstance.__table__
        completed = select(p.c.sop_instance_uid).join(r, r.c.performed_step_uid == p.c.sop_instance_uid).where(
            p.c.status == "COMPLETED", r.c.study_instance_uid == study_uid)
        steps = set(conn.execute(completed).scalars())
        if not steps:
            return None
        return frozenset(conn.execute(select(i.c.sop_instance_uid).where(i.c.performed_step_uid.in_(steps))).scalars())

    @staticmethod
    def _mpps_accessions(conn: Connection, study_uid: str) -> frozenset[str]:
        r = PerformedStepRequest.__table__
        return frozenset(a for a in conn.execute(select(r.c.accession_number).where(
            r.c.study_instance_uid == study_uid)).scalars() if a)

    @staticmethod
    def _instances(conn: Connection, study_uid: str):
        inst, loc = Instance.__table__, InstanceLocation.__table__
        rows = conn.execute(select(inst.c.sop_instance_uid, inst.c.sop_class_uid, inst.c.series_instance_uid,
                                   inst.c.first_notified_at, loc.c.retrieve_ae_title, loc.c.availability,
                                   loc.c.retrieve_url, loc.c.notified_at)
                            .join(loc, loc.c.sop_instance_uid == inst.c.sop_instance_uid)
                            .where(inst.c.study_instance_uid == study_uid)).all()
        grouped: dict[str, list] = defaultdict(list)
        head: dict[str, tuple] = {}
        for r in rows:
            head[r.sop_instance_uid] = (r.sop_class_uid, r.series_instance_uid, r.first_notified_at)
            grouped[r.sop_instance_uid].append((r.retrieve_ae_title, Availability(r.availability), r.retrieve_url,
                                                _aware(r.notified_at)))
        for uid, locations in grouped.items():
            cls, series, first_at = head[uid]
            yield InstanceFacts(uid, cls, series, tuple(locations), _aware(first_at))


def _declared_ready(row, facts: Facts) -> bool:
    """A workitem its creator made READY, with inputs the server did not choose, is the creator's
    responsibility: the server leaves it alone (one it made READY has server-managed input rows)."""
    return row.input_readiness_state == "READY" and not facts.listed


def _workitem_facts(row, ds: dict) -> WorkitemFacts:
    requests = items(ds, REQUEST_SEQ)
    return WorkitemFacts(
        study_instance_uid=row.study_instance_uid,
        accession_numbers=frozenset(a for a in (first(r, ACCESSION) for r in requests) if a),
        scheduled_workitem_codes=frozenset((first(c, CODE_VALUE), first(c, CODE_SCHEME))
                                           for c in items(ds, WORKITEM_CODES) if first(c, CODE_VALUE)),
        worklist_label=row.worklist_label)


def _studies_of(ds: dict, study_uid: str | None) -> list[str]:
    found = [study_uid] if study_uid else []
    found += [s for s in (first(r, STUDY_UID) for r in items(ds, REQUEST_SEQ)) if s]
    return list(dict.fromkeys(found))


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _iso(at: datetime | None) -> str | None:
    return _aware(at).isoformat().replace("+00:00", "Z") if at else None


def template_workitem(template: Template, study_uid: str, start: datetime) -> dict:
    """The N-CREATE data set of a workitem a template creates: every Type 1 and Type 2 attribute of
    Table CC.2.5-3, INCOMPLETE until the policy says otherwise."""
    from pydicom.dataset import Dataset

    def code(c) -> Dataset:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = c.value, c.scheme
        item.CodeMeaning = c.meaning or c.value
        return item

    spec = template.creates
    ds = Dataset()
    ds.TransactionUID = None
    ds.ScheduledProcedureStepPriority = spec.priority.value
    ds.ProcedureStepLabel = spec.procedure_step_label
    ds.WorklistLabel = spec.worklist_label
    ds.ScheduledStationNameCodeSequence = [code(spec.station_name_code)] if spec.station_name_code else []
    ds.ScheduledStationClassCodeSequence = []
    ds.ScheduledStationGeographicLocationCodeSequence = []
    ds.ScheduledProcedureStepStartDateTime = start.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S")
    ds.ScheduledWorkitemCodeSequence = [code(spec.scheduled_workitem_code)]
    ds.InputReadinessState = "INCOMPLETE"
    ds.InputInformationSequence = []
    ds.StudyInstanceUID = study_uid
    ds.ScheduledProcessingParametersSequence = []
    ds.CommentsOnTheScheduledProcedureStep = f"created by template {template.name}"
    for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "AdmissionID", "AdmittingDiagnosesDescription"):
        setattr(ds, keyword, None)
    for keyword in ("IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence", "IssuerOfAdmissionIDSequence",
                    "AdmittingDiagnosesCodeSequence", "ReferencedRequestSequence",
                    "ProcedureStepProgressInformationSequence", "UnifiedProcedureStepPerformedProcedureSequence"):
        setattr(ds, keyword, [])
    ds.ProcedureStepState = "SCHEDULED"
    return ds.to_json_dict()
