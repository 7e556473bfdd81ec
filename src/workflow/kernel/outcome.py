"""What a use case answers: a DIMSE-neutral status with the data that goes back to the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflow.kernel.statuses import Status


@dataclass(frozen=True)
class Outcome:
    status: Status
    dataset: dict[str, Any] | None = None  # DICOM JSON returned to the caller
    comment: str | None = None  # Error Comment
    tags: tuple[str, ...] = ()  # attributes concerned (Attribute Identifier List)
    uid: str | None = None  # the SOP Instance concerned (e.g. one the server assigned)
    notes: tuple[str, ...] = field(default=())  # for the log: coercions, deviations
    error_id: int | None = None  # Error ID (0000,0903) where the standard names one
    facts: dict[str, Any] = field(default_factory=dict)  # for the log line: what the request concerned
