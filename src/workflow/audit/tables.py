"""The audit trail's outbox. Changing it needs an Alembic migration (tests check it)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel


class AuditRecord(SQLModel, table=True):
    """One DICOM Audit Message owed to (or sent to) the audit repository, written in the transaction of
    the change it describes; the sender delivers them in id order."""

    __tablename__ = "audit_record"

    id: Optional[int] = Field(default=None, primary_key=True)
    created_at: datetime
    event: str = Field(max_length=64)  # the event's name, for operators (`wfm audit`)
    message_xml: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16, index=True)  # PENDING, SENT
    attempts: int = 0
    sent_at: Optional[datetime] = None
    last_error: Optional[str] = Field(default=None, max_length=2000)
