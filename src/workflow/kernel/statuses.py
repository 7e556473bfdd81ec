"""DIMSE status codes we return, as data: code, category and the standard's meaning (PS3.7 Annex C)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    code: int
    category: str  # Success, Warning or Failure
    meaning: str

    @property
    def hex(self) -> str:
        return f"{self.code:04X}"


SUCCESS = Status(0x0000, "Success", "Success")
NO_SUCH_ATTRIBUTE = Status(0x0105, "Failure", "No such attribute")
INVALID_ATTRIBUTE_VALUE = Status(0x0106, "Failure", "Invalid attribute value")
PROCESSING_FAILURE = Status(0x0110, "Failure", "Processing failure")
DUPLICATE_SOP_INSTANCE = Status(0x0111, "Failure", "Duplicate SOP Instance")
NO_SUCH_SOP_CLASS = Status(0x0118, "Failure", "No such SOP Class")
MISSING_ATTRIBUTE = Status(0x0120, "Failure", "Missing attribute")
MISSING_ATTRIBUTE_VALUE = Status(0x0121, "Failure", "Missing attribute value")
RESOURCE_LIMITATION = Status(0x0213, "Failure", "Resource limitation")

# Statuses whose response may carry an Attribute Identifier List (0000,1005) naming the attributes.
CARRIES_ATTRIBUTE_LIST = {MISSING_ATTRIBUTE.code, MISSING_ATTRIBUTE_VALUE.code}


def conditions(*groups: tuple[tuple[Status, str], ...]) -> tuple[tuple[Status, str], ...]:
    """A service's status table for the conformance statement: its groups of (status, when) rows
    joined, a status named by several groups once, its conditions in order."""
    merged: dict[Status, list[str]] = {}
    for group in groups:
        for status, when in group:
            merged.setdefault(status, []).append(when)
    return tuple((status, " ".join(whens)) for status, whens in merged.items())
