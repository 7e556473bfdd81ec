"""Feeding a reconciliation's findings back into what the server believes (`feedback =
"mark_unavailable"` in `[remote_ae.reconcile]`; the default only reports).

After a COMPLETED run: an instance the archive does not hold (MISSING_IN_ARCHIVE) or has Removed from
Operational Use becomes UNAVAILABLE at that archive; one the archive reports with another
availability (AVAILABILITY_MISMATCH) takes the archive's. Each study concerned is marked for readiness
evaluation in the same transaction (`StudyChanges`: readiness, which reconciliation does not
import), so a workitem that counted on those instances falls back as its
policy says. A location an IAN has touched since the run's cut-off is left alone: the newer IAN wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import groupby

from sqlalchemy import Engine, select, update

from workflow.reconcile.rules.holdings import AVAILABILITIES
from workflow.reconcile.rules.compare import Reason
from workflow.kernel.ports import StudyChanges
from workflow.store.engine import reading
from workflow.ian.tables import Instance, InstanceLocation
from workflow.reconcile.tables import COMPLETED, DiscrepancyRow, ReconciliationRun

log = logging.getLogger("workflow.reconcile")
I, L, D, RUN = Instance.__table__, InstanceLocation.__table__, DiscrepancyRow.__table__, ReconciliationRun.__table__


@dataclass
class Feedback:
    instances_changed: int = 0
    studies_marked: int = 0


def new_availability(reason: str, actual: str | None) -> str | None:
    """The availability a finding puts on our record of the instance at that archive, or None."""
    if reason == Reason.MISSING_IN_ARCHIVE or (reason == Reason.AVAILABILITY_MISMATCH and actual == "REMOVED"):
        return "UNAVAILABLE"
    if reason == Reason.AVAILABILITY_MISMATCH and actual in AVAILABILITIES:
        return actual
    return None


def apply(engine: Engine, run_uid: str, retrieve_ae: str, studies: StudyChanges,
          now: datetime | None = None) -> Feedback:
    now = now or datetime.now(timezone.utc)
    with reading(engine) as conn:
        run = conn.execute(select(RUN.c.id, RUN.c.status, RUN.c.cutoff).where(RUN.c.run_uid == run_uid)).first()
    if run is None or run.status != COMPLETED:
        return Feedback()  # a failed run's findings are incomplete: nothing is changed on their account
    cutoff = run.cutoff if run.cutoff.tzinfo else run.cutoff.replace(tzinfo=timezone.utc)
    query = (select(D.c.study_instance_uid, D.c.sop_instance_uid, D.c.reason, D.c.actual)
             .where(D.c.run_id == run.id, D.c.sop_instance_uid.is_not(None),
                    D.c.reason.in_([Reason.MISSING_IN_ARCHIVE.value, Reason.AVAILABILITY_MISMATCH.value]))
             .order_by(D.c.study_instance_uid))
    result = Feedback()
    with reading(engine) as reader:  # streams while each study's changes commit beside it
        rows = reader.execution_options(yield_per=2000).execute(query)
        for study, findings in groupby(rows, key=lambda r: r.study_instance_uid):
            with engine.begin() as conn:  # one study per transaction: its changes and its mark together
                changed = 0
                for f in findings:
                    availability = new_availability(f.reason, f.actual)
                    if availability is None:
                        continue
                    changed += conn.execute(update(L).where(
                        L.c.instance_id == _instance_id(f.sop_instance_uid), L.c.retrieve_ae_title == retrieve_ae,
                        L.c.notified_at <= cutoff, L.c.availability != availability
                    ).values(availability=availability)).rowcount
                if changed:
                    studies.mark(conn, study, now)
                    result.instances_changed += changed
                    result.studies_marked += 1
    if result.studies_marked:
        studies.committed()
    log.info(f"reconciliation {run_uid}: feedback changed {result.instances_changed} instance(s) at {retrieve_ae} "
             f"in {result.studies_marked} studies")
    return result


def _instance_id(uid: str):
    """The number a location knows its instance by (`instance.id`), looked up by the instance's UID."""
    return select(I.c.id).where(I.c.sop_instance_uid == uid).scalar_subquery()
