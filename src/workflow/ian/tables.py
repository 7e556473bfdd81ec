"""Tables of the durable store. Changing any of them needs an Alembic migration (tests check it).

Availability is kept per instance and location (Retrieve AE Title); an instance's availability for
workflow is derived from its locations when read, so an IAN never rewrites more than it announces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Index, Text
from sqlmodel import Field, SQLModel

from workflow.store.types import UID_TYPE

AE = 16   # maximum length of an AE value


class Notification(SQLModel, table=True):
    """Every accepted IAN as received: the audit trail and a replay source."""

    __tablename__ = "notification"

    id: Optional[int] = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(sa_type=UID_TYPE, unique=True)
    study_instance_uid: str = Field(sa_type=UID_TYPE, index=True)
    calling_ae_title: str = Field(max_length=AE)
    peer_address: str = Field(max_length=64)
    received_at: datetime = Field(index=True)
    instance_count: int
    referenced_pps_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    # SHA-256 of the canonical DICOM JSON: tells a sender's safe retry from a conflicting re-use.
    content_sha256: str = Field(max_length=64)
    dataset_json: str = Field(sa_column=Column(Text, nullable=False))


class Instance(SQLModel, table=True):
    """One SOP instance any IAN has referenced."""

    __tablename__ = "instance"
    __table_args__ = (Index("ix_instance_study_series", "study_instance_uid", "series_instance_uid"),)

    # Numbered in order of arrival: the locations are keyed by it, so a new instance's location goes at
    # the end of their primary key instead of a random page of it (UIDs are random; an IAN's
    # instances used to dirty one page each there: 0020_locations_by_instance_id).
    id: Optional[int] = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(sa_type=UID_TYPE, unique=True)
    sop_class_uid: str = Field(sa_type=UID_TYPE)
    series_instance_uid: str = Field(sa_type=UID_TYPE)
    study_instance_uid: str = Field(sa_type=UID_TYPE)
    first_notified_at: datetime
    last_notified_at: datetime
    # Indexed: readiness reads the instances the IANs since its last pass changed (readiness/service.py).
    last_notification_id: int = Field(sa_column=Column(ForeignKey("notification.id"), nullable=False, index=True))


class InstanceLocation(SQLModel, table=True):
    """Where an instance can be retrieved (a Retrieve AE Title) and how available it is there."""

    __tablename__ = "instance_location"

    instance_id: int = Field(sa_column=Column(ForeignKey("instance.id"), primary_key=True))
    retrieve_ae_title: str = Field(max_length=AE, primary_key=True)
    availability: str = Field(max_length=16)
    retrieve_url: Optional[str] = Field(default=None, sa_column=Column(Text))
    retrieve_uri: Optional[str] = Field(default=None, sa_column=Column(Text))
    retrieve_location_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    file_set_id: Optional[str] = Field(default=None, max_length=16)
    file_set_uid: Optional[str] = Field(default=None, sa_type=UID_TYPE)
    notified_at: datetime
    # Indexed: readiness reads the locations the IANs since its last pass changed (readiness/service.py).
    notification_id: int = Field(sa_column=Column(ForeignKey("notification.id"), nullable=False, index=True))


class InstancePerformedStep(SQLModel, table=True):
    """An instance linked to the performed procedure step an IAN referenced."""

    __tablename__ = "instance_performed_step"

    sop_instance_uid: str = Field(
        sa_column=Column(ForeignKey("instance.sop_instance_uid"), primary_key=True)
    )
    performed_step_uid: str = Field(sa_type=UID_TYPE, primary_key=True, index=True)
    performed_step_class_uid: str = Field(sa_type=UID_TYPE)
    notification_id: int = Field(sa_column=Column(ForeignKey("notification.id"), nullable=False))
