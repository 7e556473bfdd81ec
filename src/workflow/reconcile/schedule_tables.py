"""Scheduled reconciliation: APScheduler's job store and the claims that make each firing run once.
Changing them needs an Alembic migration (tests check it).

Several `wfm serve` processes may share one database and so one job store; APScheduler 3 does not
coordinate them, and two processes may take the same firing. Each firing is therefore claimed first:
the process whose INSERT of (archive, scheduled fire time) succeeds runs it, the others skip it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Float, LargeBinary, Table, Unicode, UniqueConstraint
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE

JOBS_TABLE = "wfm_apscheduler_jobs"

# APScheduler 3's SQLAlchemyJobStore table, column for column (it creates it only when missing): the
# migrations own the schema, so a database is complete after `wfm db upgrade` and nothing appears in
# it that the models do not know.
apscheduler_jobs = Table(
    JOBS_TABLE, SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class ReconciliationClaim(SQLModel, table=True):
    """One firing of an archive's reconciliation schedule, taken by one process."""

    __tablename__ = "reconciliation_claim"
    __table_args__ = (
        # The claim itself: a second INSERT for the same firing violates this, whichever process tries.
        UniqueConstraint("archive_ae_title", "scheduled_fire_time", name="uq_reconciliation_claim_firing"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    archive_ae_title: str = Field(max_length=16)
    # The fire time APScheduler scheduled (the job store's next_run_time, identical in every process),
    # not when a process happened to wake up.
    scheduled_fire_time: datetime
    claimed_at: datetime
    claimed_by: str = Field(max_length=255)  # host:pid of the process that runs it
    run_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)  # the run it produced, once known
