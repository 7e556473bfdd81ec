"""Readiness: IANs, MPPS and new workitems drive each SCHEDULED workitem's Input Information and
Input Readiness State, as the site's policies say.

An IAN or MPPS only marks its study (`StudyChanges.mark`, in its transaction); the readiness worker
(readiness/worker.py) evaluates marked studies in transactions of their own. A new workitem is evaluated
in its N-CREATE's transaction (`NewWorkitems.evaluate`), so the State Report it owes commits with it."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import OrderedDict, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

from functools import cached_property

from sqlalchemy import (Connection, Engine, bindparam, case, delete, exists, false, func, literal, or_, select,
                        tuple_, update)
from sqlalchemy.dialects import postgresql, sqlite

from workflow.ian.rules.availability import Availability
from workflow.kernel.json_model import first, items
from workflow.readiness.rules.policy import (CanonicalInstances, Choices, Facts, InputRules, InstanceFacts, PolicySet, StudyFacts,
                                             Template, WorkitemFacts, evaluate_readiness, readiness_change)
from workflow.readiness import procedures
from workflow.readiness.rules.policy.modalities import study_modalities
from workflow.store.at_commit import execute_at_commit
from workflow.store.engine import aware, reading
from workflow.store.wakeups import READINESS, notify_at_commit
from workflow.ian.tables import Instance, InstanceLocation, Notification
from workflow.mpps.tables import PerformedStep, PerformedStepInstance, PerformedStepRequest
from workflow.readiness.tables import ReadinessPending, ReadinessStudy, ReadinessTimer
from workflow.ups.tables import WorkitemInput
from workflow.ups.tables import Workitem, WorkitemSeqItem
from workflow.ups.rules.state import UPS_PUSH_SOP_CLASS_UID
from workflow.ups.worklist import WorklistService
from workflow.readiness.inputs import KeptInputs, apply_readiness, input_values, last_write

log = logging.getLogger("workflow.readiness")

W, SEQ = Workitem.__table__, WorkitemSeqItem.__table__
INPUT, TIMER, PENDING = WorkitemInput.__table__, ReadinessTimer.__table__, ReadinessPending.__table__
STUDY = ReadinessStudy.__table__
INST, LOC, NOTE = Instance.__table__, InstanceLocation.__table__, Notification.__table__
RETRY_FIRST, RETRY_MAX = 5.0, 600.0  # seconds before a study whose pass failed is evaluated again
CACHED_INSTANCES = 500_000  # instances a process keeps of the studies it evaluated last (~1.5 KB each)
REQUEST_SEQ, STUDY_UID, ACCESSION = "0040A370", "0020000D", "00080050"
WORKITEM_CODES, CODE_VALUE, CODE_SCHEME = "00404018", "00080100", "00080102"
MODALITY, PROCEDURE_CODES, PPS_DESCRIPTION = "00080060", "00081032", "00400254"


class ReadinessService:
    def __init__(self, engine: Engine, policies: PolicySet, worklist: WorklistService | None = None) -> None:
        self.engine = engine
        self.policies = policies
        self.worklist = worklist  # creates the workitems templates ask for
        self.wake = threading.Event()  # set after a commit that marked a study: the worker evaluates it
        self._waiting: dict[str, datetime] = {}  # study -> when this process first saw it pending
        # study -> (when to try again, seconds waited last): a study whose pass failed waits, so that it
        # neither holds up the others nor fills the log; transient failures are retried soon.
        self._failed: dict[str, tuple[datetime, float]] = {}
        self.next_due: datetime | None = None  # when `run_pending` has a study falling due next
        self.timers_wake = threading.Event()  # set when a settle timer was written: the timer thread looks
        self.timer_writes = 0  # settle timers written by this process (the timer thread compares)
        # Incremental evaluation: what this process read of each study at its last pass (see
        # `_StudyCache`); WFM_READINESS_FULL=1 reads the whole study every pass (bench/readiness.py
        # measures both in one run).
        self.incremental = os.environ.get("WFM_READINESS_FULL", "") not in ("1", "true")
        self._caches: OrderedDict[str, _StudyCache] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_reads = {"full": 0, "incremental": 0}  # passes by how they read the study (tests)

    # ------------------------------------------------------------------ triggers

    def mark(self, conn: Connection, study_uid: str, at: datetime, ian: bool = False) -> None:
        """StudyChanges: inside an IAN's or MPPS's transaction, mark the study for evaluation by
        `run_pending`. An evaluation reads what the IANs marked since the last pass changed (the whole
        study after any other mark), once per burst of IANs (bench/readiness.py)."""
        mark_pending(conn, study_uid, at, ian)

    def ian_mark_from(self, gate):
        """StudyChanges: an IAN's mark as a statement its own statement carries (`ian_mark_from`)."""
        return _ian_mark_from(gate)

    def committed(self) -> None:
        """StudyChanges: the marking transaction committed; the worker may evaluate."""
        self.wake.set()

    def run_pending(self, now: datetime, limit: int = 200, quiet: float = 0.0,
                    max_wait: float | None = None) -> int:
        """Evaluate the studies marked pending, each in its own transaction that also clears its mark.
        Returns how many events were written.

        A study is due once no mark came for `quiet` seconds, or, during a long burst of IANs, once it
        has waited `max_wait` seconds since this process first saw it pending (or since its last pass):
        each pass has a cost of its own (its commit, its statements), so a pass per short pause would
        take the CPU the IANs need. `next_due` tells the caller when the next study falls due."""
        with reading(self.engine) as conn:
            pending = conn.execute(select(PENDING.c.study_instance_uid, PENDING.c.marked_at)
                                   .order_by(PENDING.c.marked_at).limit(limit)).all()
        if len(pending) < limit:  # marks another process cleared
            self._waiting = {s: at for s, at in self._waiting.items() if s in {p[0] for p in pending}}
        due, self.next_due = [], None
        for study_uid, marked_at in pending:
            at = aware(marked_at) + timedelta(seconds=quiet)
            if max_wait is not None:
                at = min(at, self._waiting.setdefault(study_uid, now) + timedelta(seconds=max_wait))
            if study_uid in self._failed:
                at = max(at, self._failed[study_uid][0])
            if at <= now:
                due.append(study_uid)
            else:
                self.next_due = min(self.next_due or at, at)
        return self._evaluate(due, now)

    def _evaluate(self, due: list[str], now: datetime, batch: int = 200) -> int:
        """Evaluate the due studies and clear their marks. Studies with nothing to decide are settled
        together (`_settle_quick`); a full evaluation has a transaction of its own, so row locks on
        workitems are never held across several studies' work. A mark is cleared by its generation as
        read under its hold, as no IAN can renew it then: one renewed since the listing is read by the
        pass too. (Cleared by the listed generation, a renewed mark stayed, and its IAN time, the
        earliest since it was made, had every later pass of a burst read the burst from its start.)"""
        rest = due if self.policies.templates else self._settle_quick(due, now, batch)
        written = 0
        for study_uid in rest:
            try:
                with self.engine.begin() as conn:
                    # The mark as it is now, held: another server skips it; an IAN's upsert waits for the
                    # lock (on SQLite, for the write lock).
                    held = conn.execute(_HOLD[conn.dialect.name], {"study": study_uid}).first()
                    if held is None:  # held by another server, or cleared since the listing
                        continue
                    written += self.update_study(conn, study_uid, now)
                    cleared = conn.execute(_CLEAR, {"study": study_uid, "generation": held.generation}).rowcount
            except Exception:  # noqa: BLE001 - this study's pass is retried later; the others go on
                self._pass_failed(study_uid, now)
                continue
            self._failed.pop(study_uid, None)
            self._cleared(study_uid, bool(cleared), now)
        return written

    def _pass_failed(self, study_uid: str, now: datetime) -> None:
        """Nothing of the pass was kept (its transaction rolled back) and the mark stays: the study is
        evaluated again after RETRY_FIRST seconds, the wait doubling up to RETRY_MAX at each failure."""
        wait = min(RETRY_MAX, self._failed[study_uid][1] * 2) if study_uid in self._failed else RETRY_FIRST
        self._failed[study_uid] = (now + timedelta(seconds=wait), wait)
        log.exception(f"readiness evaluation of a study failed; it is tried again in {wait:g} s",
                      extra={"study_instance_uid": study_uid})

    def _settle_quick(self, due: list[str], now: datetime, batch: int) -> list[str]:
        """Settle the due studies no workitem, template or MPPS watches, known only from IANs: their
        only requested procedure (the bare one IANs give) is created or already where the facts put it.
        Up to `batch` studies share a transaction (a commit is the dear part: an fsync on SQLite) of
        three statements whatever their number: the lookup (on PostgreSQL it also locks their marks,
        skipping those another server holds), the requested procedures created, the marks cleared.
        Returns the studies that need the full evaluation (`update_study`)."""
        generations, rest = {}, []
        for at in range(0, len(due), batch):
            quick, bare = [], []
            with self.engine.begin() as conn:
                for study_uid, watched, announced, known, state, kept, generation in conn.execute(
                        _LOOKUP[conn.dialect.name], {"studies": due[at:at + batch]}):
                    generations[study_uid] = generation  # as held now (see `_evaluate`)
                    if watched or not announced or kept:  # kept: a process keeps the study; its passes count
                        rest.append(study_uid)
                    elif known == 0:
                        bare.append(study_uid)
                    elif known == 1 and state is not None and procedures.settled_by_ians(state):
                        quick.append(study_uid)
                    else:
                        rest.append(study_uid)
                procedures.announce(conn, bare, now)
                quick += bare
                cleared = set(conn.execute(_CLEAR_MANY, {"marks": [(s, generations[s]) for s in quick]}).scalars()
                              ) if quick else set()
            for study_uid in quick:
                self._cleared(study_uid, study_uid in cleared, now)
        return rest

    def _cleared(self, study_uid: str, cleared: bool, now: datetime) -> None:
        if cleared:
            self._waiting.pop(study_uid, None)
        else:  # marked again while evaluated: the burst goes on, its wait starts now
            self._waiting[study_uid] = now

    def pending(self) -> int:
        """How many studies wait for evaluation (for operators and tests)."""
        with reading(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(PENDING)).scalar_one()

    def update_study(self, conn: Connection, study_uid: str, now: datetime) -> int:
        """Apply templates, then re-evaluate every SCHEDULED workitem of the study (by its Study
        Instance UID or a Referenced Request item). Returns how many events were written."""
        with self._cache_lock:
            return self._update_study(conn, study_uid, now)

    def _update_study(self, conn: Connection, study_uid: str, now: datetime) -> int:
        written = self._apply_templates(conn, study_uid, now) if self.policies.templates else 0
        cache = self._study_cache(conn, study_uid) if self.incremental else None
        snapshot = _StudySnapshot(conn, study_uid, cache)  # read once for all the study's workitems
        links = [W.c.study_instance_uid == study_uid, _requests(STUDY_UID, [study_uid])]
        if snapshot.accessions:  # a policy may link by an Accession Number the study's MPPS names
            links.append(_requests(ACCESSION, snapshot.accessions))
        # Locked as read (PostgreSQL): a claim committing between this read and the write below would
        # otherwise have its IN PROGRESS data set overwritten by this SCHEDULED copy. A claim that
        # commits first leaves the row no longer SCHEDULED, and PostgreSQL skips it. SQLite's BEGIN
        # IMMEDIATE serialises the writers already.
        rows = conn.execute(_locked(select(W).where(W.c.procedure_step_state == "SCHEDULED", or_(*links))
                                    .order_by(W.c.sop_instance_uid), conn)).all()
        written += sum(self._update_workitem(conn, row, study_uid, now, snapshot) for row in rows)
        if cache is not None:
            procedures.refresh(conn, study_uid, None, now, cache.expected_by_step.get, lambda: cache.online,
                               cache.not_online.get)
        else:
            procedures.refresh(conn, study_uid, lambda: snapshot.instances, now)
        return written

    def _study_cache(self, conn: Connection, study_uid: str) -> "_StudyCache":
        """The study as this process read it at its last pass, brought up to date by reading only the
        instances the IANs marked since then changed; read whole when that would not be exact (another
        process's pass came between, a mark other than an IAN's, an instance left the study, a first
        pass). Records the pass in `readiness_study` (every process's last pass of the study)."""
        mark = conn.execute(select(PENDING.c.ians_since, PENDING.c.full_read)
                            .where(PENDING.c.study_instance_uid == study_uid)).first()
        cache = self._caches.pop(study_uid, None)
        # A random id: should this transaction roll back, no later pass can carry the same one.
        pass_id = uuid.uuid4().hex
        # The row still naming this process's last pass says that no other pass came between and that no
        # instance left the study since: an IAN that moves an instance to another study overwrites it (the
        # trigger `instance_left_study`, migration 0016). Checked and replaced in one statement, so a move
        # committing meanwhile is seen now or by the next pass (PostgreSQL re-checks the row it waited for).
        kept = cache is not None and conn.execute(_NEXT_PASS, {"study": study_uid, "last": cache.pass_id,
                                                               "new": pass_id}).rowcount == 1
        if not kept:
            conn.execute(_PASS[conn.dialect.name], {"study": study_uid, "new": pass_id})
        fresh = not kept or (mark is not None and (mark.full_read or mark.ians_since is None))
        if fresh:
            cache = _StudyCache(study_uid)
            cache.read_all(conn)
        else:
            cache.read_since(conn, mark.ians_since if mark is not None else None)
        cache.pass_id = pass_id
        self.cache_reads["full" if fresh else "incremental"] += 1
        self._caches[study_uid] = cache  # the most recently used last
        total = sum(len(c.uids) for c in self._caches.values())
        while total > CACHED_INSTANCES and len(self._caches) > 1:
            _, dropped = self._caches.popitem(last=False)
            total -= len(dropped.uids)
        return cache

    def _apply_templates(self, conn: Connection, study_uid: str, now: datetime) -> int:
        """Workitems that templates create for a study matching their conditions: one per study and
        template (a deterministic SOP Instance UID makes a second creation a no-op). Each creation is
        logged with the conditions that held, and at DEBUG why each other template did not fire."""
        facts = self._study_facts(conn, study_uid)
        written = 0
        for template in self.policies.templates:
            checks = template.check(facts)
            uid = template.workitem_uid(study_uid)
            failed = [c.text for c in checks if not c.held]
            if failed:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(f"template {template.name!r} did not fire: {'; '.join(failed)}",
                              extra=_template_context(facts, uid, "not created", failed))
                continue
            if conn.execute(select(W.c.sop_instance_uid).where(W.c.sop_instance_uid == uid)).first() is not None:
                continue
            ds = template_workitem(template, study_uid, template.start_at(now))
            written += self.worklist.create_internal(conn, uid, ds, now)
            held = [c.text for c in checks] or ["it has no conditions"]
            log.info(f"template {template.name!r} created workitem {uid}: {'; '.join(held)}",
                     extra=_template_context(facts, uid, "created", held))
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
        """NewWorkitems: a workitem just created, evaluated in its N-CREATE's transaction."""
        row = conn.execute(select(W).where(W.c.sop_instance_uid == uid)).first()
        ds = json.loads(row.dataset_json)
        studies = _studies_of(ds, row.study_instance_uid) or self._studies_by_accession(conn, ds)
        snapshots = {study: _StudySnapshot(conn, study) for study in studies[:1]}
        written = sum(self._update_workitem(conn, row, study, now, snapshot) for study, snapshot in snapshots.items())
        for study in _studies_of(ds, row.study_instance_uid):  # the requests it names; one read of each study
            snapshot = snapshots.get(study) or _StudySnapshot(conn, study)
            procedures.refresh(conn, study, lambda: snapshot.instances, now)
        return written

    @staticmethod
    def _studies_by_accession(conn: Connection, ds: dict) -> list[str]:
        """Studies whose MPPS names an Accession Number of the workitem's Referenced Request Sequence
        (for policies that link by Accession Number)."""
        accessions = {a for a in (first(r, ACCESSION) for r in items(ds, REQUEST_SEQ)) if a}
        if not accessions:
            return []
        r = PerformedStepRequest.__table__
        return list(conn.execute(select(r.c.study_instance_uid).where(r.c.accession_number.in_(accessions))
                                 .distinct().order_by(r.c.study_instance_uid)).scalars())

    def fire_due_timers(self, now: datetime) -> int:
        """Settle timers that are due (they live in the database, so a restart loses none)."""
        with reading(self.engine) as conn:
            due = conn.execute(select(TIMER.c.workitem_uid, TIMER.c.study_instance_uid)
                               .where(TIMER.c.due_at <= now)).all()
        written = 0
        for uid, study in due:
            with self.engine.begin() as conn:
                conn.execute(delete(TIMER).where(TIMER.c.workitem_uid == uid))
                row = conn.execute(_locked(select(W).where(W.c.sop_instance_uid == uid), conn)).first()
                if row is not None and row.procedure_step_state == "SCHEDULED":
                    written += self._update_workitem(conn, row, study, now)
        return written

    def next_timer(self) -> datetime | None:
        """When the next settle timer falls due (None: no timer)."""
        with reading(self.engine) as conn:
            return aware(conn.execute(select(func.min(TIMER.c.due_at))).scalar())

    # ------------------------------------------------------------------ evaluation

    def explain_study(self, study_uid: str) -> dict[str, Any] | None:
        """Why each template did or did not create a workitem for a study: the study's facts and, per
        template, each condition checked against them. Read-only; None for a study nothing is known of."""
        with reading(self.engine) as conn:
            facts = self._study_facts(conn, study_uid)
            r = PerformedStepRequest.__table__
            if not (facts.sop_class_uids or facts.calling_ae_titles or conn.execute(
                    select(r.c.performed_step_uid).where(r.c.study_instance_uid == study_uid).limit(1)).first()):
                return None
            uids = {t.name: t.workitem_uid(study_uid) for t in self.policies.templates}
            existing = dict(conn.execute(select(W.c.sop_instance_uid, W.c.procedure_step_state)
                                         .where(W.c.sop_instance_uid.in_(list(uids.values())))).all())
        modalities, source = study_modalities(facts.modalities, facts.sop_class_uids)
        templates = []
        for t in self.policies.templates:
            checks, uid = t.check(facts), uids[t.name]
            fires = all(c.held for c in checks)
            outcome = "created" if uid in existing else "would create" if fires else "does not fire"
            templates.append({"template": t.name, "source": t.source, "fires": fires, "outcome": outcome,
                              "workitem_uid": uid if outcome != "does not fire" else None,
                              "procedure_step_state": existing.get(uid),
                              "failed": [c.condition for c in checks if not c.held],
                              "conditions": [c.as_dict() for c in checks]})
        return {"study_instance_uid": study_uid,
                "facts": {"modalities": sorted(modalities), "modality_source": source,
                          "sop_class_uids": sorted(facts.sop_class_uids),
                          "calling_ae_titles": sorted(facts.calling_ae_titles),
                          "procedure_codes": [list(c) for c in sorted(facts.procedure_codes)],
                          "study_description": facts.study_description},
                "templates": templates}

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
            ev = evaluate_readiness(policy, facts)
        out.update(policy=policy.name, evaluated_readiness=ev.readiness.value,
                   expected=sorted(facts.expected) if facts.expected is not None else None,
                   available=[i.instance.sop_instance_uid for i in ev.inputs], missing=list(ev.missing),
                   not_available=list(ev.not_available), reasons=list(ev.reasons),
                   settle_due_at=_iso(ev.settle_due_at),
                   note=("IN PROGRESS and final workitems are not changed by readiness"
                         if row.procedure_step_state != "SCHEDULED" else None))
        return out

    def _update_workitem(self, conn: Connection, row, study_uid: str, now: datetime,
                  snapshot: "_StudySnapshot | None" = None) -> int:
        ds = json.loads(row.dataset_json)
        snapshot = snapshot or _StudySnapshot(conn, study_uid)
        kept = snapshot.cache.inputs(conn, row.sop_instance_uid) if snapshot.cache is not None else None
        # read once: what is listed, and what to rewrite
        current = kept.values if kept is not None else input_values(conn, row.sop_instance_uid)
        policy, facts = self._facts(conn, row, ds, study_uid, now, snapshot, current.keys())
        if policy is None or _declared_ready(row, facts):
            return 0
        ev = snapshot.evaluation(policy, facts)
        conn.execute(delete(TIMER).where(TIMER.c.workitem_uid == row.sop_instance_uid))
        if ev.settle_due_at is not None:
            conn.execute(TIMER.insert().values(workitem_uid=row.sop_instance_uid, study_instance_uid=study_uid,
                                               due_at=ev.settle_due_at))
            self.timer_writes += 1
            self.timers_wake.set()
        change = readiness_change(policy, row.procedure_step_state, row.input_readiness_state, ev)
        if change is None:
            return 0
        if kept is None:
            return apply_readiness(conn, row, change, now, study_uid, current)
        choices = snapshot.cache.choices(policy.inputs)  # the evaluation's: its inputs are `change`'s
        written = apply_readiness(conn, row, change, now, study_uid, current, kept, choices.changed_since(kept.synced))
        kept.synced = choices.mark()
        return written

    def _facts(self, conn: Connection, row, ds: dict, study_uid: str, now: datetime,
               snapshot: "_StudySnapshot | None" = None, listed: frozenset[str] | None = None):
        study = snapshot or _StudySnapshot(conn, study_uid)
        policy = self.policies.policy_for(_workitem_facts(row, ds), study_uid, study.accessions)
        if policy is None:
            return None, None
        if listed is None:
            listed = frozenset(conn.execute(select(INPUT.c.sop_instance_uid)
                                            .where(INPUT.c.workitem_uid == row.sop_instance_uid)).scalars())
        facts = Facts(expected=study.expected, instances=study.instances, listed=listed,
                      last_ian_at=study.last_ian_at, now=now)
        return policy, facts


class _StudySnapshot:
    """What readiness needs to know of one study, read once per evaluation however many workitems
    watch the study; the expensive parts (every instance and location) only when a policy applies.
    With a `_StudyCache` (the worker's passes) everything comes from it, already up to date."""

    def __init__(self, conn: Connection, study_uid: str, cache: "_StudyCache | None" = None) -> None:
        self.conn, self.study_uid, self.cache = conn, study_uid, cache
        self._evaluations: dict[tuple, tuple] = {}
        if cache is not None:
            self.accessions, self.last_ian_at, self.expected = cache.accessions, cache.last_ian_at, cache.expected
            # The evaluation reads the instances from the cache's Choices (`evaluation`): no tuple of the
            # whole study is built for a pass.
            self.instances = CanonicalInstances()
        else:
            self.accessions = _accessions(conn, study_uid)

    def evaluation(self, policy, facts: Facts):
        """Workitems of one study under one policy with the same inputs listed (the usual case: they
        were all filled from the same IANs) share one evaluation."""
        key = (id(policy), frozenset(facts.listed) if policy.reads_listed else None, facts.now)
        if key not in self._evaluations:
            choices = self.cache.choices(policy.inputs) if self.cache is not None else None
            # policy kept: id() stays unique
            self._evaluations[key] = (policy, evaluate_readiness(policy, facts, choices))
        return self._evaluations[key][1]

    @cached_property
    def last_ian_at(self) -> datetime | None:
        return _last_ian_at(self.conn, self.study_uid)

    @cached_property
    def expected(self) -> frozenset[str] | None:
        """The union of the Performed Series of the study's COMPLETED MPPS; None when it has none."""
        return _expected(self.conn, self.study_uid)

    @cached_property
    def instances(self) -> tuple[InstanceFacts, ...]:
        return tuple(_instances(self.conn, INST.c.study_instance_uid == self.study_uid, self.study_uid)[0].values())


class _StudyCache:
    """What one process read of a study, kept between the worker's passes so that a pass reads only
    what the IANs marked since the last one changed (issue 16): the study's instances and their
    locations, the expected set and accessions (from MPPS: any MPPS mark reads the whole study again),
    the time of its last IAN, and per input rules the `Choices` the evaluation would otherwise make
    again for every instance; and the input rows of its workitems (`KeptInputs`). Valid while
    `pass_id` is the study's `readiness_study.pass_id`: a pass of another process (which consumed marks
    this one never read) makes the next pass read it whole."""

    def __init__(self, study_uid: str) -> None:
        self.study_uid = study_uid
        self.pass_id: str | None = None
        self.uids: set[str] = set()  # every instance of the study, with a location or not
        self.instances: dict[str, InstanceFacts] = {}  # those with a location (the facts)
        self.accessions: frozenset[str] = frozenset()
        self.expected: frozenset[str] | None = None
        self.expected_by_step: dict[str, frozenset[str]] = {}  # of the COMPLETED MPPS
        self.online: set[str] = set()  # instances ONLINE somewhere (requested procedures)
        self.not_online: dict[str, set[str]] = {}  # of each COMPLETED MPPS's instances, those not in `online`
        self.last_ian_at: datetime | None = None
        self._choices: dict[InputRules, Choices] = {}
        self._inputs: dict[str, KeptInputs] = {}  # by workitem

    def read_all(self, conn: Connection) -> None:
        self.accessions = _accessions(conn, self.study_uid)
        self.expected_by_step = _expected_by_step(conn, self.study_uid)
        self.expected = frozenset().union(*self.expected_by_step.values()) if self.expected_by_step else None
        self.last_ian_at = _last_ian_at(conn, self.study_uid)
        self.instances, self.uids = _instances(conn, INST.c.study_instance_uid == self.study_uid, self.study_uid)
        self.online = {u for u, i in self.instances.items() if i.best_availability is Availability.ONLINE}
        self.not_online = {step: set(uids - self.online) for step, uids in self.expected_by_step.items()}

    def read_since(self, conn: Connection, since: datetime | None) -> None:
        """Bring the cache up to date with the IANs received at or after `since` (None: no mark, so
        nothing changed). An instance another study's IAN took away is not among them: the caller
        reads the study whole then (`readiness_study`)."""
        if since is not None:
            notes = conn.execute(select(NOTE.c.id, NOTE.c.received_at).where(
                NOTE.c.study_instance_uid == self.study_uid, NOTE.c.received_at >= since)).all()
            ids = [n.id for n in notes]
            changed: set[str] = set()
            for at in range(0, len(ids), 1000):
                chunk = ids[at:at + 1000]
                changed.update(conn.execute(select(INST.c.sop_instance_uid).where(
                    INST.c.last_notification_id.in_(chunk))).scalars())
                changed.update(conn.execute(select(INST.c.sop_instance_uid).join_from(
                    LOC, INST, INST.c.id == LOC.c.instance_id).where(LOC.c.notification_id.in_(chunk))).scalars())
            found: dict[str, InstanceFacts] = {}
            mine: set[str] = set()
            ordered = sorted(changed)
            for at in range(0, len(ordered), 1000):
                part = _instances(conn, INST.c.sop_instance_uid.in_(ordered[at:at + 1000]), self.study_uid)
                found.update(part[0])
                mine |= part[1]
            for uid in changed:
                if uid in mine:
                    self.uids.add(uid)
                else:  # moved to another study
                    self.uids.discard(uid)
                if uid in found:
                    self.instances[uid] = found[uid]
                    for choices in self._choices.values():
                        choices.put(found[uid])
                    self._online(uid, found[uid].best_availability is Availability.ONLINE)
                else:
                    self.instances.pop(uid, None)
                    self._online(uid, False)
                    for choices in self._choices.values():
                        choices.drop(uid)
            latest = max((aware(n.received_at) for n in notes), default=None)
            if latest is not None and (self.last_ian_at is None or latest > self.last_ian_at):
                self.last_ian_at = latest

    def _online(self, uid: str, online: bool) -> None:
        (self.online.add if online else self.online.discard)(uid)
        for step, uids in self.expected_by_step.items():
            if uid in uids:
                (self.not_online[step].discard if online else self.not_online[step].add)(uid)

    def inputs(self, conn: Connection, workitem_uid: str) -> KeptInputs:
        """The workitem's input rows: as kept, while the last write of them was this process's."""
        write_id = last_write(conn, workitem_uid)
        kept = self._inputs.get(workitem_uid)
        if kept is None or kept.write_id != write_id:
            kept = self._inputs[workitem_uid] = KeptInputs(write_id, input_values(conn, workitem_uid))
        return kept

    def choices(self, rules: InputRules) -> Choices:
        if rules not in self._choices:
            self._choices[rules] = Choices(rules, self.instances.values(), self.expected)
        return self._choices[rules]


def _accessions(conn: Connection, study_uid: str) -> frozenset[str]:
    r = PerformedStepRequest.__table__
    return frozenset(a for a in conn.execute(select(r.c.accession_number).where(
        r.c.study_instance_uid == study_uid)).scalars() if a)


def _last_ian_at(conn: Connection, study_uid: str) -> datetime | None:
    return aware(conn.execute(select(func.max(NOTE.c.received_at))
                              .where(NOTE.c.study_instance_uid == study_uid)).scalar())


def _expected(conn: Connection, study_uid: str) -> frozenset[str] | None:
    """The union of the Performed Series of the study's COMPLETED MPPS; None when it has none."""
    p, r, i = PerformedStep.__table__, PerformedStepRequest.__table__, PerformedStepInstance.__table__
    completed = select(p.c.sop_instance_uid).join(r, r.c.performed_step_uid == p.c.sop_instance_uid).where(
        p.c.status == "COMPLETED", r.c.study_instance_uid == study_uid)
    steps = set(conn.execute(completed).scalars())
    if not steps:
        return None
    return frozenset(conn.execute(select(i.c.sop_instance_uid).where(i.c.performed_step_uid.in_(steps))).scalars())


def _expected_by_step(conn: Connection, study_uid: str) -> dict[str, frozenset[str]]:
    """The Performed Series instances of each COMPLETED MPPS of the study (empty ones included)."""
    p, r, i = PerformedStep.__table__, PerformedStepRequest.__table__, PerformedStepInstance.__table__
    completed = select(p.c.sop_instance_uid).join(r, r.c.performed_step_uid == p.c.sop_instance_uid).where(
        p.c.status == "COMPLETED", r.c.study_instance_uid == study_uid)
    steps = set(conn.execute(completed).scalars())
    found: dict[str, set[str]] = {s: set() for s in steps}
    if steps:
        for step, uid in conn.execute(select(i.c.performed_step_uid, i.c.sop_instance_uid)
                                      .where(i.c.performed_step_uid.in_(steps))):
            found[step].add(uid)
    return {s: frozenset(u) for s, u in found.items()}


def _instances(conn: Connection, where, study_uid: str) -> tuple[dict[str, InstanceFacts], set[str]]:
    """The instances `where` selects that belong to the study, with their locations (those with none
    are left out of the facts, as IANs never listed them anywhere); and the UIDs of all of them.

    The study is checked here, not in the query: given both, PostgreSQL may take the study's index and
    filter its every instance against a chunk of UIDs, a pass then costing in proportion to the study
    (0.9 s a chunk at 50,000 instances) instead of the chunk."""
    rows = conn.execute(select(INST.c.sop_instance_uid, INST.c.sop_class_uid, INST.c.series_instance_uid,
                               INST.c.first_notified_at, LOC.c.retrieve_ae_title, LOC.c.availability,
                               LOC.c.retrieve_url, LOC.c.notified_at, LOC.c.file_set_id, LOC.c.file_set_uid,
                               INST.c.study_instance_uid)
                        .outerjoin(LOC, LOC.c.instance_id == INST.c.id).where(where)).all()
    grouped: dict[str, list] = defaultdict(list)
    head: dict[str, tuple] = {}
    for r in rows:
        if r.study_instance_uid != study_uid:
            continue
        head[r.sop_instance_uid] = (r.sop_class_uid, r.series_instance_uid, r.first_notified_at)
        if r.retrieve_ae_title is not None:
            grouped[r.sop_instance_uid].append((r.retrieve_ae_title, Availability(r.availability), r.retrieve_url,
                                                aware(r.notified_at), r.file_set_id, r.file_set_uid))
    out = {}
    for uid, locations in grouped.items():
        cls, series, first_at = head[uid]
        out[uid] = InstanceFacts(uid, cls, series, tuple(locations), aware(first_at))
    return out, set(head)


class PendingMarks:
    """StudyChanges for a process without a readiness worker (`wfm reconcile run`): the marks are rows,
    which a server's worker finds within its fallback interval."""

    def mark(self, conn: Connection, study_uid: str, at: datetime, ian: bool = False) -> None:
        mark_pending(conn, study_uid, at, ian)
        notify_at_commit(conn, READINESS)  # a server's worker on PostgreSQL hears of it at once

    def ian_mark_from(self, gate):
        return None  # the mark also notifies: `mark` it is

    def committed(self) -> None:
        pass


def mark_pending(conn: Connection, study_uid: str, now: datetime, ian: bool = False) -> int:
    """Mark a study for the readiness worker, inside the caller's transaction (any process's worker
    finds it: the marks are rows). `ian`: the mark of an IAN received at `now` (its rows carry its
    notification, so a pass may read only those); any other mark makes the next pass read the whole
    study. Written at commit (no statement in the transaction reads it back): on PostgreSQL an IAN's
    mark carries its COMMIT, a round trip saved. Returns 1."""
    execute_at_commit(conn, _MARK[conn.dialect.name], {"study": study_uid, "at": now,
                                                       "since": now if ian else None, "full": not ian})
    return 1


def _mark_statement(dialect):
    # Built once per dialect: constructing an upsert costs more than executing it (once per IAN).
    return _merged_mark(dialect.insert(PENDING).values(study_instance_uid=bindparam("study"), generation=1,
                                                       marked_at=bindparam("at"), ians_since=bindparam("since"),
                                                       full_read=bindparam("full")))


def _ian_mark_from(gate):
    """PostgreSQL: an IAN's mark (`mark_pending(..., ian=True)`: since = at, not a full read) selected
    from `gate`, so written only when `gate` has a row."""
    at = bindparam("at", type_=PENDING.c.marked_at.type)
    return _merged_mark(postgresql.insert(PENDING).from_select(
        ["study_instance_uid", "generation", "marked_at", "ians_since", "full_read"],
        select(bindparam("study", type_=PENDING.c.study_instance_uid.type), literal(1), at, at, false())
        .select_from(gate)))


def _merged_mark(stmt):
    """A mark meeting the study's mark: the generation goes up (a pass clears only the generation it
    read), the time is the new mark's, the IANs start at the earliest, a full read is kept."""
    old, new = PENDING.c.ians_since, stmt.excluded.ians_since
    # The earliest IAN since the row was made: IANs committing out of the order they were received
    # in (concurrent associations) are all read by the next pass.
    earliest = case((old.is_(None), new), (new.is_(None), old), (new < old, new), else_=old)
    return stmt.on_conflict_do_update(index_elements=[PENDING.c.study_instance_uid],
                                      set_={"generation": PENDING.c.generation + 1,
                                            "marked_at": stmt.excluded.marked_at, "ians_since": earliest,
                                            "full_read": or_(PENDING.c.full_read, stmt.excluded.full_read)})


_MARK = {"postgresql": _mark_statement(postgresql), "sqlite": _mark_statement(sqlite)}
_NEXT_PASS = update(STUDY).where(STUDY.c.study_instance_uid == bindparam("study"),
                                 STUDY.c.pass_id == bindparam("last")).values(pass_id=bindparam("new"))


def _pass_statement(dialect):
    stmt = dialect.insert(STUDY).values(study_instance_uid=bindparam("study"), pass_id=bindparam("new"))
    return stmt.on_conflict_do_update(index_elements=[STUDY.c.study_instance_uid],
                                      set_={"pass_id": stmt.excluded.pass_id})


_PASS = {"postgresql": _pass_statement(postgresql), "sqlite": _pass_statement(sqlite)}
_CLEAR = delete(PENDING).where(PENDING.c.study_instance_uid == bindparam("study"),
                               PENDING.c.generation == bindparam("generation"))
_CLEAR_MANY = delete(PENDING).where(tuple_(PENDING.c.study_instance_uid, PENDING.c.generation).in_(
    bindparam("marks", expanding=True))).returning(PENDING.c.study_instance_uid)
_GENERATION = select(PENDING.c.generation).where(PENDING.c.study_instance_uid == bindparam("study"))
_HOLD = {"postgresql": _GENERATION.with_for_update(skip_locked=True), "sqlite": _GENERATION}


def _lookup():
    """One statement for many marked studies: whether anything watches each (a workitem directly or by
    a Referenced Request, an MPPS), whether IANs announced it, how many requested procedures it has,
    the state of its bare one that IANs gave, whether a process keeps it (`readiness_study`), and the
    mark's generation."""
    study = PENDING.c.study_instance_uid
    r, rp = PerformedStepRequest.__table__, procedures.RP
    watched = or_(exists().where(W.c.study_instance_uid == study),
                  exists().where(SEQ.c.sequence_tag == REQUEST_SEQ, SEQ.c.key == STUDY_UID, SEQ.c.value == study),
                  exists().where(r.c.study_instance_uid == study))
    return select(study, watched, exists().where(Instance.__table__.c.study_instance_uid == study),
                  select(func.count()).where(rp.c.study_instance_uid == study).scalar_subquery(),
                  select(rp.c.state).where(rp.c.study_instance_uid == study, rp.c.accession_number == "",
                                           rp.c.requested_procedure_id == "", rp.c.sources == "IAN").scalar_subquery(),
                  exists().where(STUDY.c.study_instance_uid == study), PENDING.c.generation
                  ).where(study.in_(bindparam("studies", expanding=True)))


_LOOKUP = {"sqlite": _lookup(), "postgresql": _lookup().with_for_update(of=PENDING, skip_locked=True)}


def _locked(query, conn: Connection):
    """The workitem rows of `query`, locked until the transaction ends (PostgreSQL), in the query's
    order: two evaluations locking overlapping workitems take them in the same order."""
    return query.with_for_update(of=W) if conn.dialect.name == "postgresql" else query


def _requests(key: str, values) -> Any:
    """A workitem whose Referenced Request Sequence has an item with `key` among `values`."""
    return exists().where(SEQ.c.workitem_uid == W.c.sop_instance_uid, SEQ.c.sequence_tag == REQUEST_SEQ,
                          SEQ.c.key == key, SEQ.c.value.in_(list(values)))


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



def _template_context(facts: StudyFacts, uid: str, outcome: str, reasons: list[str]) -> dict[str, str]:
    """The log fields of a template's decision: the study, the workitem, the AEs whose IANs it rests on."""
    return {"study_instance_uid": facts.study_instance_uid, "sop_class": UPS_PUSH_SOP_CLASS_UID, "sop_instance": uid,
            "calling_ae": ",".join(sorted(facts.calling_ae_titles)), "outcome": outcome, "reason": "; ".join(reasons)}


def _iso(at: datetime | None) -> str | None:
    return aware(at).isoformat().replace("+00:00", "Z") if at else None


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
