"""Choosing a ready-made Inventory from Inventory FIND matches (PS3.4 JJ), as values.

FIND matches every node of a tree, so matches are grouped (Transaction UID, else Content Date/Time);
only groups of COMPLETE, INSTANCE-level nodes taken since the cut-off and covering the scope asked
count, the most recent first. A group is one tree once a candidate's Incorporated Inventory Instance
Sequence accounts for every other member: its root (`RootSearch`; the caller retrieves candidates).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset

from workflow.reconcile.rules.dicom_values import parse_date_time
from workflow.reconcile.rules.scope import HoldingsScope, scope_covers


@dataclass(frozen=True)
class InventoryMatch:
    sop_uid: str
    transaction_uid: str
    content_date: str
    content_time: str
    level: str
    completion: str
    total_records: int | None
    covers: bool  # its Scope of Inventory covers the scope asked

    @property
    def content_datetime(self) -> datetime | None:
        return parse_date_time(self.content_date, self.content_time)

    @property
    def group(self) -> tuple[str, ...]:
        """Nodes of one tree share a Transaction UID (or at least their Content Date and Time)."""
        return (self.transaction_uid,) if self.transaction_uid else (self.content_date, self.content_time)


def inventory_match(ident: Dataset, scope: HoldingsScope) -> InventoryMatch:
    """One Inventory FIND match, and whether its Scope of Inventory covers `scope`."""
    total = ident.get("TotalNumberOfStudyRecords")
    return InventoryMatch(
        sop_uid=str(ident.get("SOPInstanceUID") or ""), transaction_uid=str(ident.get("TransactionUID") or ""),
        content_date=str(ident.get("ContentDate") or ""), content_time=str(ident.get("ContentTime") or ""),
        level=str(ident.get("InventoryLevel") or "").strip().upper(),
        completion=str(ident.get("InventoryCompletionStatus") or "").strip().upper(),
        total_records=int(total) if total not in (None, "") else None,
        covers=scope_covers(ident.get("ScopeOfInventorySequence"), scope))


def usable_groups(matches: Iterable[InventoryMatch], cutoff: datetime) -> list[list[InventoryMatch]]:
    """The matches that are COMPLETE, INSTANCE level, taken since `cutoff` and covering the scope,
    grouped by tree, the most recent group first."""
    groups: dict[tuple[str, ...], list[InventoryMatch]] = {}
    for match in matches:
        when = match.content_datetime
        if (match.level != "INSTANCE" or match.completion != "COMPLETE" or when is None or when < cutoff
                or not match.covers):
            continue
        groups.setdefault(match.group, []).append(match)
    return sorted(groups.values(), key=lambda g: max(m.content_datetime for m in g), reverse=True)


class RootSearch:
    """The root among a group's nodes: `for candidate in search.candidates()`, retrieve it, then
    `search.is_root(candidate, its incorporated UIDs)`. Candidates come most study records first;
    a node found below another one is not offered again."""

    def __init__(self, group: Iterable[InventoryMatch]) -> None:
        self._order = sorted(group, key=lambda m: -(m.total_records or 0))
        self._members = {m.sop_uid for m in self._order}
        self._below: set[str] = set()

    def candidates(self) -> Iterator[InventoryMatch]:
        for candidate in self._order:
            if candidate.sop_uid not in self._below:
                yield candidate

    def is_root(self, candidate: InventoryMatch, incorporated: Iterable[str]) -> bool:
        """Does the candidate's subtree account for every other member of the group?"""
        subtree = set(incorporated)
        if self._members - subtree - {candidate.sop_uid}:
            self._below |= subtree  # a subtree of another node, or one of several trees
            return False
        return True
