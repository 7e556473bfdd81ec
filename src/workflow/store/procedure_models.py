"""Requested procedures as tracked (domain/requested_procedure.py). Changing it needs a migration."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

UID = 64


class RequestedProcedure(SQLModel, table=True):
    """One requested procedure: its study, and the Accession Number and Requested Procedure ID that
    named it ("" when no source gave them: a study known only from IANs)."""

    __tablename__ = "requested_procedure"
    __table_args__ = (UniqueConstraint("study_instance_uid", "accession_number", "requested_procedure_id",
                                       name="uq_requested_procedure_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(max_length=UID, index=True)
    accession_number: str = Field(default="", max_length=16)
    requested_procedure_id: str = Field(default="", max_length=16)
    state: str = Field(max_length=16)
    # Which kinds of source named it: a comma-separated subset of UPS, MPPS, IAN.
    sources: str = Field(max_length=32)
    created_at: datetime
    updated_at: datetime
