"""Server-managed UPS inputs and readiness timers. Changing them needs an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Text
from sqlmodel import Field, SQLModel

UID = 64


class WorkitemInput(SQLModel, table=True):
    """One instance of a workitem's Input Information Sequence, as the readiness policy chose it (one
    row per instance: adding one is O(1); the sequence is assembled when the workitem is read)."""

    __tablename__ = "workitem_input"

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    sop_instance_uid: str = Field(max_length=UID, primary_key=True)
    sop_class_uid: str = Field(max_length=UID)
    study_instance_uid: str = Field(max_length=UID)
    series_instance_uid: str = Field(max_length=UID)
    retrieve_ae_title: str = Field(max_length=16)
    retrieve_url: Optional[str] = Field(default=None, sa_column=Column(Text))
    file_set_id: Optional[str] = Field(default=None, max_length=16)
    file_set_uid: Optional[str] = Field(default=None, max_length=UID)


class ReadinessTimer(SQLModel, table=True):
    """When a workitem's readiness must be evaluated again with no new facts (a settle time)."""

    __tablename__ = "readiness_timer"

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    study_instance_uid: str = Field(max_length=UID)
    due_at: datetime = Field(index=True)


class ReadinessPending(SQLModel, table=True):
    """A study whose workitems must be evaluated again: marked in the transaction of the IAN or MPPS
    that changed it, cleared by the readiness worker's transaction that evaluated it. Evaluating once
    per burst of IANs, not once per IAN, keeps the cost per instance flat for large studies; the row
    lives in the database, so a restart evaluates what was pending."""

    __tablename__ = "readiness_pending"

    study_instance_uid: str = Field(max_length=UID, primary_key=True)
    # Bumped by every new mark: the worker clears the row only if no mark came after its read.
    generation: int
    marked_at: datetime = Field(index=True)
