"""Readiness: pending studies, settle timers and requested procedures. Changing them needs an Alembic
migration."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Boolean, Column, ForeignKey, UniqueConstraint, true
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE


class ReadinessTimer(SQLModel, table=True):
    """When a workitem's readiness must be evaluated again with no new facts (a settle time)."""

    __tablename__ = "readiness_timer"

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    study_instance_uid: str = Field(sa_type=UID_TYPE)
    due_at: datetime = Field(index=True)


class ReadinessPending(SQLModel, table=True):
    """A study whose workitems must be evaluated again: marked in the transaction of the IAN or MPPS
    that changed it, cleared by the readiness worker's transaction that evaluated it. Evaluating once
    per burst of IANs, not once per IAN, keeps the cost per instance flat for large studies; the row
    lives in the database, so a restart evaluates what was pending."""

    __tablename__ = "readiness_pending"

    study_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    # Bumped by every new mark: the worker clears the row only if no mark came after its read.
    generation: int
    marked_at: datetime = Field(index=True)
    # Incremental evaluation (service.py `_StudyCache`): `ians_since` is the earliest received_at of
    # the IANs marked since the row was made; `full_read` says a mark came from something else (an
    # MPPS, reconciliation), whose change a read of the IANs since `ians_since` would not see.
    ians_since: Optional[datetime] = None
    full_read: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))


class ReadinessStudy(SQLModel, table=True):
    """The last pass of the readiness worker over a study, in any process (a random id each pass): a
    process keeps what it read of a study between passes only while the last pass is its own."""

    __tablename__ = "readiness_study"

    study_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    pass_id: str = Field(max_length=32)


class ReadinessInputs(SQLModel, table=True):
    """The last write of a workitem's `workitem_input` rows by readiness, in any process (a random id
    each write): a process keeps the rows it wrote while the last write is its own."""

    __tablename__ = "readiness_inputs"

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    write_id: str = Field(max_length=32)


class RequestedProcedure(SQLModel, table=True):
    """One requested procedure: its study, and the Accession Number and Requested Procedure ID that
    named it ("" when no source gave them: a study known only from IANs)."""

    __tablename__ = "requested_procedure"
    __table_args__ = (UniqueConstraint("study_instance_uid", "accession_number", "requested_procedure_id",
                                       name="uq_requested_procedure_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(sa_type=UID_TYPE, index=True)
    accession_number: str = Field(default="", max_length=16)
    requested_procedure_id: str = Field(default="", max_length=16)
    state: str = Field(max_length=16)
    # Which kinds of source named it: a comma-separated subset of UPS, MPPS, IAN.
    sources: str = Field(max_length=32)
    created_at: datetime
    updated_at: datetime
