"""DICOM attribute matching (PS3.4 C.2.2.2) turned into SQL conditions.

Shared by the Study Root C-FIND SCP, the Inventory FIND SCP and the Scope of Inventory, so a key
matches the same way whichever service it arrives through. Supported: single value, wild card
(* and ?, via SQLite GLOB, case-sensitive like DICOM), list of UIDs, and date/datetime ranges.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement


class Where:
    """An AND of SQL conditions with their parameters."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.params: list = []

    def add(self, sql: str, *params) -> None:
        self.terms.append(sql)
        self.params.extend(params)

    def extend(self, other: Where) -> None:
        self.terms.extend(other.terms)
        self.params.extend(other.params)

    @property
    def sql(self) -> str:
        return " AND ".join(f"({t})" for t in self.terms) or "1 = 1"


def values(elem: DataElement | object | None) -> list[str]:
    """An element's (or a raw value's) values as strings; [] for absent or empty (universal)."""
    value = elem.value if isinstance(elem, DataElement) else elem
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value if str(v) != ""]
    return [str(value)]


def is_universal(value: str | None) -> bool:
    return value is None or value == "" or value.strip("*") == ""


def _glob(value: str) -> str:
    # GLOB knows [ ] as a character class; DICOM does not, so match them literally.
    return value.replace("[", "[[]")


def add_string(where: Where, column: str, value: str | None) -> None:
    """Single value or wild card matching on one column."""
    if is_universal(value):
        return
    if "*" in value or "?" in value:
        where.add(f"{column} GLOB ?", _glob(value))
    else:
        where.add(f"{column} = ?", value)


def add_any(where: Where, column: str, options: list[str]) -> None:
    """List of UID matching (or multiple value matching): any of the values."""
    options = [v for v in options if v]
    if not options:
        return
    if len(options) == 1:
        where.add(f"{column} = ?", options[0])
    else:
        where.add(f"{column} IN ({', '.join('?' * len(options))})", *options)


def add_range(where: Where, column: str, low: str, high: str, *, datetime: bool = False) -> None:
    """Inclusive range; an empty end is unbounded. A DT end given with less precision covers the
    whole period it names (20240131 as an upper bound includes that day's times)."""
    if low:
        where.add(f"{column} >= ?", low)
    if high:
        where.add(f"{column} <= ?", high + "9" * (14 - len(high)) if datetime else high)


def add_date(where: Where, column: str, value: str | None, *, datetime: bool = False) -> None:
    """DA/DT key as sent in Q/R: a single value, or a range "A-B", "-B", "A-"."""
    if is_universal(value):
        return
    if "-" in value:
        low, high = value.split("-", 1)
        add_range(where, column, low.strip(), high.strip(), datetime=datetime)
    elif datetime:
        add_range(where, column, value, value, datetime=True)
    else:
        where.add(f"{column} = ?", value)


def add_modalities(where: Where, options: list[str], study_id: str = "st.id") -> None:
    """Modalities in Study: a study matches if any of its series has any of the modalities."""
    options = [v for v in options if v and not is_universal(v)]
    if options:
        where.add(f"EXISTS (SELECT 1 FROM series m WHERE m.study = {study_id} "
                  f"AND m.modality IN ({', '.join('?' * len(options))}))", *options)
