"""The inventories wfm makes for archives that cannot (`wfm inventory build`): the crawl, resumable
study by study, and the Inventory SOP instances it produced, kept whole in the database so that every
`wfm serve` process sharing it serves them and a backup keeps them. Changing a table needs an Alembic
migration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE

AE = 16
RUNNING, DONE, FAILED = "RUNNING", "DONE", "FAILED"  # crawl states
PENDING = "PENDING"  # a study not listed yet


class InventoryCrawl(SQLModel, table=True):
    """One `wfm inventory build` of one archive and scope; RUNNING until its inventory is stored, so a
    second command for the same archive and scope resumes it."""

    __tablename__ = "inventory_crawl"

    id: int | None = Field(default=None, primary_key=True)
    archive_ae_title: str = Field(max_length=AE, index=True)
    scope_key: str = Field(max_length=500)  # the scope as canonical JSON: the same scope resumes
    status: str = Field(max_length=16, index=True)
    started_at: datetime
    listed_at: datetime | None = None  # when the study list was complete
    finished_at: datetime | None = None
    root_uid: str | None = Field(default=None, sa_type=UID_TYPE)
    comment: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class InventoryCrawlStudy(SQLModel, table=True):
    """A study the archive listed: PENDING until its series and instances are listed (DONE, with its
    study record), or FAILED (not listed; the inventory then says PARTIAL and names it)."""

    __tablename__ = "inventory_crawl_study"

    crawl_id: int = Field(foreign_key="inventory_crawl.id", primary_key=True)
    study_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    state: str = Field(max_length=16, index=True)
    study_json: str = Field(sa_column=Column(Text, nullable=False))  # the study-level C-FIND answer
    record_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # the study record
    detail: str = Field(default="", max_length=500)


class InventoryNode(SQLModel, table=True):
    """One Inventory SOP instance (a node of a tree), as Part 10 bytes, with what Inventory FIND
    matches on."""

    __tablename__ = "inventory_node"

    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    root_uid: str = Field(sa_type=UID_TYPE, index=True)
    archive_ae_title: str = Field(max_length=AE, index=True)
    content_date: str = Field(max_length=8, index=True)
    content_time: str = Field(max_length=16)
    purpose: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    level: str = Field(max_length=16)
    completion: str = Field(max_length=16)
    records: int
    total_records: int
    scope_json: str = Field(sa_column=Column(Text, nullable=False))  # Scope of Inventory Sequence, DICOM JSON
    created_at: datetime
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
