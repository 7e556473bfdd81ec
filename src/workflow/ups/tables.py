"""Tables of the UPS worklist. Changing any of them needs an Alembic migration (tests check it).

The workitem's full data set is kept as DICOM JSON (`dataset_json`, authoritative, never holding the
Transaction UID). Matching keys are copied out into indexed columns (single-valued keys) and into
`workitem_seq_item` (one row per attribute value inside sequence items), so C-FIND matching runs in
SQL on indexes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Index, Text, func
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE


class Workitem(SQLModel, table=True):
    __tablename__ = "workitem"
    __table_args__ = (
        Index("ix_workitem_state_start", "procedure_step_state", "scheduled_start_datetime"),
        Index("ix_workitem_ready_priority", "input_readiness_state", "priority"),
        # A scheduler's "my worklist" query: label, state and time order straight from the index.
        Index("ix_workitem_label_state_start", "worklist_label", "procedure_step_state", "scheduled_start_datetime"),
    )

    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    procedure_step_state: str = Field(max_length=16)
    # The lock of PS3.4 CC.1.1: set by the performer on claim; never returned by N-GET or C-FIND.
    transaction_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    priority: Optional[str] = Field(default=None, max_length=16)
    procedure_step_label: Optional[str] = Field(default=None, max_length=64)  # indexed below
    worklist_label: Optional[str] = Field(default=None, max_length=64)
    # DT values normalised to YYYYMMDDHHMMSS.ffffff (UTC offset dropped) so ranges compare as text.
    scheduled_start_datetime: Optional[str] = Field(default=None, max_length=26, index=True)
    expected_completion_datetime: Optional[str] = Field(default=None, max_length=26)
    modification_datetime: Optional[str] = Field(default=None, max_length=26)
    expiration_datetime: Optional[str] = Field(default=None, max_length=26)
    input_readiness_state: Optional[str] = Field(default=None, max_length=16)
    study_instance_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE, index=True)
    patient_name: Optional[str] = Field(default=None, max_length=324)
    patient_id: Optional[str] = Field(default=None, max_length=64)  # indexed below
    patient_birth_date: Optional[str] = Field(default=None, max_length=8)
    patient_sex: Optional[str] = Field(default=None, max_length=16)
    admission_id: Optional[str] = Field(default=None, max_length=64)
    dataset_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime
    updated_at: datetime
    # When the workitem reached COMPLETED or CANCELED: the start of its retention period.
    finished_at: Optional[datetime] = Field(default=None, index=True)


# Person Names match case-insensitively (lower() on both sides, workflow.ups.query), so the index is on
# lower(patient_name). text_pattern_ops: PostgreSQL uses an index for a LIKE prefix only under a collation
# named C or POSIX (not C.UTF-8, not en_US.UTF-8), or with this operator class; it still serves `=`.
Index("ix_workitem_patient_name_folded",
      func.lower(Workitem.__table__.c.patient_name).label("patient_name_folded"),
      postgresql_ops={"patient_name_folded": "text_pattern_ops"})
# Matched case-sensitively, with wild cards too ("CT*"): text_pattern_ops, for the same reason.
Index("ix_workitem_procedure_step_label", Workitem.__table__.c.procedure_step_label,
      postgresql_ops={"procedure_step_label": "text_pattern_ops"})
Index("ix_workitem_patient_id", Workitem.__table__.c.patient_id, postgresql_ops={"patient_id": "text_pattern_ops"})


class WorkitemSeqItem(SQLModel, table=True):
    """One attribute value inside an item of a matchable sequence (e.g. a code's Code Value inside
    Scheduled Station Name Code Sequence item 2). `key` is the attribute's tag, or a dotted path of
    tags for an attribute nested one level deeper (e.g. "00404009.00080100")."""

    __tablename__ = "workitem_seq_item"
    # workitem_uid in the index lets the EXISTS probe of a sequence match stay in the index.
    __table_args__ = (Index("ix_workitem_seq_item_match", "sequence_tag", "key", "value", "workitem_uid"),)

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    sequence_tag: str = Field(max_length=8, primary_key=True)
    item_index: int = Field(primary_key=True)
    key: str = Field(max_length=40, primary_key=True)
    value_index: int = Field(default=0, primary_key=True)
    value: str = Field(max_length=1024)


class Subscription(SQLModel, table=True):
    """A subscriber (Receiving AE) to one workitem, to all (global), or to those matching a filter."""

    __tablename__ = "subscription"

    id: Optional[int] = Field(default=None, primary_key=True)
    receiving_ae: str = Field(max_length=16, index=True)
    # A workitem UID, or NULL for a global / filtered global subscription.
    workitem_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE, index=True)
    # WORKITEM; GLOBAL or FILTERED (every workitem, or those matching filter_json); OPTOUT: a
    # global subscriber unsubscribed from this one workitem.
    kind: str = Field(max_length=16)
    filter_json: Optional[str] = Field(default=None, sa_column=Column(Text))
    deletion_lock: bool = False
    # A suspended global subscription still covers the workitems created before it was suspended.
    suspended_at: Optional[datetime] = None
    created_at: datetime


class OutboxEvent(SQLModel, table=True):
    """An N-EVENT-REPORT owed to a subscriber, written in the transaction that made the change."""

    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      Index("ix_outbox_order", "receiving_ae", "workitem_uid", "id"))

    id: Optional[int] = Field(default=None, primary_key=True)
    receiving_ae: str = Field(max_length=16)
    workitem_uid: str = Field(sa_type=UID_TYPE)
    event_type_id: int
    event_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16, default="PENDING")  # PENDING, DELIVERED, UNDELIVERABLE
    attempts: int = 0
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: Optional[datetime] = None
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text))


class WorkitemInput(SQLModel, table=True):
    """One instance of a workitem's Input Information Sequence, as the readiness policy chose it (one
    row per instance: adding one is O(1); the sequence is assembled when the workitem is read)."""

    __tablename__ = "workitem_input"

    workitem_uid: str = Field(
        sa_column=Column(ForeignKey("workitem.sop_instance_uid", ondelete="CASCADE"), primary_key=True))
    sop_instance_uid: str = Field(sa_type=UID_TYPE, primary_key=True)
    sop_class_uid: str = Field(sa_type=UID_TYPE)
    study_instance_uid: str = Field(sa_type=UID_TYPE)
    series_instance_uid: str = Field(sa_type=UID_TYPE)
    retrieve_ae_title: str = Field(max_length=16)
    retrieve_url: Optional[str] = Field(default=None, sa_column=Column(Text))
    file_set_id: Optional[str] = Field(default=None, max_length=16)
    file_set_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
