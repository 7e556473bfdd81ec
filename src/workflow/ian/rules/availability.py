"""Instance Availability (0008,0056) and how locations combine into an instance's availability."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Iterable, Protocol, TypeVar


class Availability(StrEnum):
    ONLINE = "ONLINE"
    NEARLINE = "NEARLINE"
    OFFLINE = "OFFLINE"
    UNAVAILABLE = "UNAVAILABLE"

    @property
    def rank(self) -> int:
        """0 is best: ONLINE > NEARLINE > OFFLINE > UNAVAILABLE."""
        return _ORDER.index(self)


_ORDER = [Availability.ONLINE, Availability.NEARLINE, Availability.OFFLINE, Availability.UNAVAILABLE]

# What the server does with each value: quoted in the conformance statement (PS3.4 R.3.4 asks for it).
BEHAVIOUR = {
    Availability.ONLINE: "Recorded for the Retrieve AE Title(s) of the item. The instance is retrievable "
                         "there now; this is the best availability an instance can have.",
    Availability.NEARLINE: "Recorded for the Retrieve AE Title(s) of the item. Retrievable with a delay; "
                           "ranks below ONLINE when the instance's locations are combined.",
    Availability.OFFLINE: "Recorded for the Retrieve AE Title(s) of the item. Needs manual intervention "
                          "to retrieve; ranks below NEARLINE.",
    Availability.UNAVAILABLE: "Recorded for the Retrieve AE Title(s) of the item, replacing that "
                              "location's earlier availability. The location is no longer listed among "
                              "the instance's Retrieve AE Titles; nothing is deleted.",
}


class Located(Protocol):
    availability: str
    notified_at: datetime


L = TypeVar("L", bound=Located)


def best_first(locations: Iterable[L]) -> list[L]:
    """Locations ordered best first: by availability, then the most recently notified."""
    return sorted(locations, key=lambda loc: (Availability(loc.availability).rank, -loc.notified_at.timestamp()))
