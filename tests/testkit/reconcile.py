"""Reading a reconciliation run's findings back from the database, as the tests compare them."""

from __future__ import annotations

from sqlalchemy import select

from workflow.reconcile.tables import DiscrepancyRow, ReconciliationRun

RUN, FINDING = ReconciliationRun.__table__, DiscrepancyRow.__table__


def findings(engine, run_uid: str) -> set[tuple[str, str | None, str | None]]:
    """(reason, Study Instance UID, SOP Instance UID) of every finding of the run."""
    with engine.connect() as conn:
        run_id = conn.execute(select(RUN.c.id).where(RUN.c.run_uid == run_uid)).scalar_one()
        return {(r.reason, r.study_instance_uid, r.sop_instance_uid) for r in conn.execute(
            select(FINDING.c.reason, FINDING.c.study_instance_uid, FINDING.c.sop_instance_uid)
            .where(FINDING.c.run_id == run_id))}
