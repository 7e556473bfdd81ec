"""Time as the services see it: aware UTC datetimes, and their DICOM DateTime text."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def dicom_dt(at: datetime) -> str:
    """A DICOM DateTime (DT) in UTC with its offset, to the microsecond."""
    return at.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S.%f") + "+0000"
