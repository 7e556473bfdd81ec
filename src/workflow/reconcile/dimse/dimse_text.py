"""Small things every Inventory client step shares: a status's Error Comment as text, and releasing an
association that may already be gone."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom.association import Association


def status_comment(status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f" ({comment})" if comment else ""


def colon(comment: str) -> str:
    return f": {comment}" if comment else ""


def release(assoc: Association | None) -> None:
    if assoc is not None and assoc.is_established:
        assoc.release()
