"""Inventory instances received by this server's Storage SCP (the C-MOVE way of fetching an
archive's inventory). Changing the table needs an Alembic migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE


class ReceivedInventory(SQLModel, table=True):
    """One Inventory SOP instance as received (its encoded data set, untouched), until the
    reconciliation that asked for it has read it. In the database, not on a local disk, so that the
    process running the reconciliation need not be the one whose Storage SCP received it."""

    __tablename__ = "received_inventory"

    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    calling_ae_title: str = Field(max_length=16)
    transfer_syntax_uid: str = Field(sa_type=UID_TYPE)
    received_at: datetime = Field(index=True)
    size: int
    dataset: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
