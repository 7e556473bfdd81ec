"""Use case: receive one Instance Availability Notification: validate it (PS3.4 Table R.3.2-1) and
store it in one transaction, whatever face it came through (DIMSE N-CREATE, HTTP).

Success is returned only after the commit. A retry of the same IAN (same SOP Instance UID, same
content) changes nothing and succeeds; the same UID with other content is refused as a duplicate.
Each stored IAN marks its study for readiness evaluation in the same transaction (`StudyChanges`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from workflow.ian.rules.notification import ATTRIBUTE_STATUSES, IAN_SOP_CLASS_UID, Notification, parse_ian
from workflow.kernel import statuses
from workflow.kernel.attributes import Rejected, is_uid
from workflow.kernel.outcome import Outcome
from workflow.audit.rules import messages
from workflow.audit.trail import NoAudit
from workflow.kernel import requestor
from workflow.kernel.ports import Audit, NoStudyChanges, StudyChanges
from workflow.store.engine import reading
from workflow.ian.tables import InstancePerformedStep
from workflow.ian.upserts import ArrayUpserts, RowUpserts
from workflow.ian.tables import Notification as NotificationRow


class IngestResult(Enum):
    STORED = "stored"
    ALREADY_STORED = "already stored"  # an identical retry
    CONFLICT = "conflict"  # same IAN SOP Instance UID, different content


log = logging.getLogger("workflow.ian")

# Every status an IAN gets and when, whatever face it came through: the conformance statement's table.
STATUS_CONDITIONS = statuses.conditions(
    ((statuses.SUCCESS, "The IAN was validated and committed to the database; or it repeats an IAN already "
                        "stored under the same SOP Instance UID with identical content (nothing is stored twice)."),),
    ATTRIBUTE_STATUSES,
    ((statuses.INVALID_ATTRIBUTE_VALUE, "Also: the Affected SOP Instance UID is malformed."),
     (statuses.MISSING_ATTRIBUTE, "Also: the request has no data set."),
     (statuses.PROCESSING_FAILURE, "The data set cannot be decoded (Error Comment says why: also an element "
                                   "twice or out of ascending tag order, PS3.5 7.1, or sent with a VR its "
                                   "dictionary entry does not allow, UN excepted), or the database "
                                   "refused the transaction (nothing was stored; the sender may retry)."),
     (statuses.DUPLICATE_SOP_INSTANCE, "An IAN with the same SOP Instance UID but different content was "
                                       "stored earlier. The earlier IAN is kept unchanged."),
     (statuses.RESOURCE_LIMITATION, "The IAN references more instances than `max_instances_per_ian`."),
     (statuses.NO_SUCH_SOP_CLASS, "An N-CREATE on the IAN presentation context named another SOP Class "
                                  "(section 3.2.4); nothing is stored.")),
)


@dataclass(frozen=True)
class Received:
    """Who sent the IAN, when, and exactly what (DICOM JSON; None when the request had no data set).
    No SOP Instance UID: the SCP assigns one (PS3.7 10.1.5) and returns it."""

    sop_instance_uid: str | None
    calling_ae_title: str
    peer_address: str
    received_at: datetime
    dataset: dict[str, Any] | None


def canonical_json(dataset: dict[str, Any]) -> str:
    return json.dumps(dataset, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class IngestService:
    def __init__(self, engine: Engine, *, max_instances: int = 50_000, type2_absent: str = "accept",
                 studies: StudyChanges = NoStudyChanges(), audit: Audit = NoAudit()) -> None:
        self.engine = engine
        self.max_instances = max_instances
        self.type2_absent = type2_absent
        self.studies = studies
        self.audit = audit  # Import (110107) of each IAN stored, in its transaction
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._upserts = (ArrayUpserts(studies.ian_mark_from) if engine.dialect.name == "postgresql"
                         else RowUpserts(engine.dialect))
        self._link_steps = self._insert(InstancePerformedStep.__table__).on_conflict_do_nothing()
        self._earlier_digest = select(NotificationRow.content_sha256).where(
            NotificationRow.sop_instance_uid == bindparam("uid"))

    def receive(self, received: Received) -> Outcome:
        """Validate and store one IAN. The outcome's `uid` is the IAN's (assigned when absent; then its
        `dataset` carries it back), `notes` its accepted deviations, `facts` what the log line names."""
        uid = received.sop_instance_uid
        assigned = uid is None
        if assigned:
            uid = generate_uid()
            received = replace(received, sop_instance_uid=uid)
        if not is_uid(uid):
            return Outcome(statuses.INVALID_ATTRIBUTE_VALUE, comment="Affected SOP Instance UID is not a valid UID",
                           uid=uid, facts={"outcome": "rejected"})
        if received.dataset is None:
            return Outcome(statuses.MISSING_ATTRIBUTE, comment="IAN has no data set", uid=uid,
                           facts={"outcome": "rejected"})
        try:
            ian = parse_ian(received.dataset, self.max_instances, type2_absent=self.type2_absent)
        except Rejected as exc:
            return Outcome(exc.status, comment=exc.comment, tags=exc.tags, uid=uid,
                           facts={"outcome": "rejected", "reason": exc.path or exc.comment})
        facts = {"study_instance_uid": ian.study_instance_uid, "instances": len(ian.instances)}
        try:
            result = self.ingest(received, ian)
        except Exception:  # noqa: BLE001 - answered with 0110; the sender may retry
            log.exception("IAN could not be stored", extra={"sop_instance": uid, "calling_ae": received.calling_ae_title,
                                                            **facts})
            return Outcome(statuses.PROCESSING_FAILURE, comment="could not store the IAN; nothing was kept",
                           uid=uid, facts={**facts, "outcome": "failed"})
        if result is IngestResult.CONFLICT:
            return Outcome(statuses.DUPLICATE_SOP_INSTANCE, comment="an IAN with this SOP Instance UID and other "
                           "content exists", uid=uid, facts={**facts, "outcome": "conflict"})
        reply = {"00080018": {"vr": "UI", "Value": [uid]}} if assigned else None
        return Outcome(statuses.SUCCESS, dataset=reply, uid=uid, notes=ian.warnings,
                       facts={**facts, "outcome": result.value})

    def ingest(self, received: Received, ian: Notification) -> IngestResult:
        """Store a validated IAN in one transaction (the study marked for evaluation in it): on
        PostgreSQL, when nothing else goes with it (no performed step to link, no audit record), as one
        statement (`ArrayUpserts.store_alone`)."""
        text = canonical_json(received.dataset)
        digest = hashlib.sha256(text.encode()).hexdigest()
        audited = getattr(self.audit, "enabled", True)
        try:
            if self._upserts.alone and not ian.pps_uid and not audited:
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    stored = self._upserts.store_alone(conn, self._note(received, ian, text, digest), ian,
                                                       received.received_at) is not None
                if not stored:
                    with reading(self.engine) as conn:
                        return self._retry_or_conflict(conn, received, digest) or IngestResult.CONFLICT
                self.studies.committed()
                return IngestResult.STORED
            with self.engine.begin() as conn:
                if not self._store(conn, received, ian, text, digest):  # the UID is taken: a retry or a conflict
                    return self._retry_or_conflict(conn, received, digest) or IngestResult.CONFLICT
                self.studies.mark(conn, ian.study_instance_uid, received.received_at, ian=True)
                if audited:
                    self.audit.record(conn, messages.imported(requestor.current(), IAN_SOP_CLASS_UID,
                                                              received.sop_instance_uid, ian.study_instance_uid,
                                                              len(ian.instances)))
            self.studies.committed()
            self.audit.committed()
            return IngestResult.STORED
        except IntegrityError:
            # A concurrent association stored the same IAN UID between our check and insert.
            with reading(self.engine) as conn:
                result = self._retry_or_conflict(conn, received, digest)
            if result is None:
                raise
            return result

    def _retry_or_conflict(self, conn, received: Received, digest: str) -> IngestResult | None:
        """What the IAN stored under this one's SOP Instance UID makes of it: a retry (the same
        content) or a conflict; None when no IAN is stored under it."""
        earlier = conn.execute(self._earlier_digest, {"uid": received.sop_instance_uid}).scalar_one_or_none()
        if earlier is None:
            return None
        return IngestResult.ALREADY_STORED if earlier == digest else IngestResult.CONFLICT

    @staticmethod
    def _note(received: Received, ian: Notification, text: str, digest: str) -> dict[str, Any]:
        """The IAN's notification row."""
        return dict(sop_instance_uid=received.sop_instance_uid, study_instance_uid=ian.study_instance_uid,
                    calling_ae_title=received.calling_ae_title, peer_address=received.peer_address,
                    received_at=received.received_at, instance_count=len(ian.instances),
                    referenced_pps_uid=ian.pps_uid, content_sha256=digest, dataset_json=text)

    def _store(self, conn, received: Received, ian: Notification, text: str, digest: str) -> bool:
        """Store the IAN; False (nothing stored) when its SOP Instance UID is stored already."""
        notification_id = self._upserts.store_new(conn, self._note(received, ian, text, digest), ian,
                                                  received.received_at)  # PostgreSQL: all in one statement
        if notification_id is None:
            return False
        if ian.pps_uid and ian.instances:
            conn.execute(self._link_steps, [
                dict(sop_instance_uid=uid, performed_step_uid=ian.pps_uid,
                     performed_step_class_uid=ian.pps_class_uid, notification_id=notification_id)
                for uid in dict.fromkeys(ref.sop_instance_uid for ref in ian.instances)
            ])
        return True
