"""Reconciliation runs and their findings. Changing them needs an Alembic migration (tests check it).

A run's findings are rows numbered by `seq` in the order they were found; at the end the run records
its canonical JSON report and that report's SHA-256 (services/reports.py), so a later change to a
finding or to the counts shows when the report is verified.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Index, Text, text
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE

AE = 16

RUNNING, COMPLETED, FAILED = "RUNNING", "COMPLETED", "FAILED"
METHODS = ("inventory", "query", "repository")


def new_run_uid() -> str:
    """A DICOM UID under the UUID-derived root 2.25 (PS3.5 B.2): no registered root needed."""
    return f"2.25.{uuid.uuid4().int}"


class ReconciliationRun(SQLModel, table=True):
    """One comparison of an archive's holdings with what IANs told us."""

    __tablename__ = "reconciliation_run"
    __table_args__ = (
        # One run per archive at a time: a second RUNNING row for the same AE title violates this.
        Index("ux_reconciliation_run_running", "archive_ae_title", unique=True,
              sqlite_where=text("status = 'RUNNING'"), postgresql_where=text("status = 'RUNNING'")),
        Index("ix_reconciliation_run_archive_started", "archive_ae_title", "started_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    run_uid: str = Field(sa_type=UID_TYPE, unique=True)
    archive_ae_title: str = Field(max_length=AE)
    archive_host: str = Field(max_length=255)
    archive_port: int
    method: str = Field(max_length=16)  # inventory | query | repository
    scope: str = Field(sa_column=Column(Text, nullable=False))  # JSON: what was reconciled
    # Instances first notified after this are not judged (IANs may still be on their way).
    cutoff: datetime
    started_at: datetime
    ended_at: Optional[datetime] = None
    status: str = Field(max_length=16)  # RUNNING | COMPLETED | FAILED
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    counts: str = Field(sa_column=Column(Text, nullable=False))  # JSON: {"by_reason": ..., "totals": ...}
    software_version: str = Field(max_length=64)
    report_sha256: Optional[str] = Field(default=None, max_length=64)
    # The canonical JSON as recorded at the end; NULL when larger than reports.RECORD_LIMIT (the
    # SHA-256 is always recorded and verifies against the rows).
    report_json: Optional[str] = Field(default=None, sa_column=Column(Text))
    # Last sign of life of a RUNNING run (its start, each batch of findings, every 100 studies): a run
    # whose process died stops beating and is ended as FAILED "abandoned" (services/reports.py).
    heartbeat_at: Optional[datetime] = None


class DiscrepancyRow(SQLModel, table=True):
    """One finding of a run."""

    __tablename__ = "discrepancy"
    __table_args__ = (
        Index("ux_discrepancy_run_seq", "run_id", "seq", unique=True),
        Index("ix_discrepancy_run_reason", "run_id", "reason"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(ForeignKey("reconciliation_run.id", ondelete="CASCADE"), nullable=False))
    seq: int
    reason: str = Field(max_length=32)
    study_instance_uid: str = Field(sa_type=UID_TYPE)
    series_instance_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    sop_instance_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    detail: str = Field(sa_column=Column(Text, nullable=False))
    expected: Optional[str] = Field(default=None, sa_column=Column(Text))
    actual: Optional[str] = Field(default=None, sa_column=Column(Text))
