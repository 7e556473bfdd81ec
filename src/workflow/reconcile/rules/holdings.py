"""What an archive holds, as reconciliation compares it: one record per instance (or per study when
only counts are known). Both sides of a reconciliation speak this shape: the expected holdings read
from our store and the actual holdings streamed from an archive (Inventory or Study Root C-FIND).

Records are compared in sort order of `key` (Study, Series, SOP Instance UID), so every producer
either yields them sorted or goes through a spool that sorts them on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AVAILABILITIES = ("ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE")


@dataclass(frozen=True, slots=True)
class Holding:
    """One SOP instance at one archive."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
    # ONLINE / NEARLINE / OFFLINE / UNAVAILABLE, or "" when the source does not say.
    availability: str = ""
    retrieve_ae: str = ""
    retrieve_url: str = ""
    # Removed from Operational Use (0008,0405) = Y at this or a higher level of an Inventory.
    removed: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.study_uid, self.series_uid, self.sop_uid)


# A Holding as a plain tuple, where a million of them are made and compared (the Inventory path):
# (study_uid, series_uid, sop_uid, availability, retrieve_ae, retrieve_url, flag). The SOP Class is not
# carried (reconciliation never compares it). The last field is `removed` at the archive; on the expected
# side it says "not settled" (announced after the cut-off), so that a row of each side that is equal
# as a tuple, with the flag False, is a match.
HoldingRow = tuple[str, str, str, str, str, str, bool]


def holding_of(row: HoldingRow) -> Holding:
    """An archive's HoldingRow as a Holding (SOP Class unknown: "")."""
    return Holding(row[0], row[1], row[2], "", row[3], row[4], row[5], bool(row[6]))


@dataclass(frozen=True, slots=True)
class StudyCount:
    """Counts an archive reports for one study (Study Root C-FIND at STUDY level, or an Inventory
    study record): used by the opt-in count short-cut and for COUNT_MISMATCH findings."""

    study_uid: str
    series_count: int | None = None
    instance_count: int | None = None
    series: dict[str, int] = field(default_factory=dict)  # Series UID -> instance count, if known
