"""Tables of performed procedure steps (MPPS). Changing them needs an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Text
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE


class PerformedStep(SQLModel, table=True):
    """One Modality Performed Procedure Step as the modality last sent it."""

    __tablename__ = "performed_step"

    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    sop_class_uid: str = Field(sa_type=UID_TYPE)
    status: str = Field(max_length=16, index=True)
    calling_ae_title: str = Field(max_length=16)
    dataset_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    updated_at: datetime
    finished_at: Optional[datetime] = None


class PerformedStepRequest(SQLModel, table=True):
    """An item of the step's Scheduled Step Attributes Sequence: the study and request it performed."""

    __tablename__ = "performed_step_request"

    performed_step_uid: str = Field(
        sa_column=Column(ForeignKey("performed_step.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    item_index: int = Field(primary_key=True)
    study_instance_uid: str = Field(sa_type=UID_TYPE, index=True)
    accession_number: Optional[str] = Field(default=None, max_length=16, index=True)
    requested_procedure_id: Optional[str] = Field(default=None, max_length=16)
    scheduled_procedure_step_id: Optional[str] = Field(default=None, max_length=16)


class PerformedStepInstance(SQLModel, table=True):
    """An instance the step's Performed Series Sequence references: its expected instance set."""

    __tablename__ = "performed_step_instance"

    performed_step_uid: str = Field(
        sa_column=Column(ForeignKey("performed_step.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True, index=True)
    series_instance_uid: str = Field(sa_type=UID_TYPE)
    sop_class_uid: str = Field(sa_type=UID_TYPE)
