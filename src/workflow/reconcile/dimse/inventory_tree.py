"""A retrieved Inventory tree on disk: its nodes, its completion, whether it can be used, and its records
read file by file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workflow.reconcile.dimse.inventory_stream import InventoryFormatError, InventoryHeader, StudyRecord, open_inventory
from workflow.reconcile.dimse.peer import ArchiveError, colon
from workflow.reconcile.rules.dicom_values import parse_date_time
from workflow.reconcile.rules.holdings import Holding, HoldingRow

# Worst first wins when the nodes of a tree disagree.
COMPLETION_RANK = {"COMPLETE": 0, "PARTIAL": 1, "CANCELED": 2, "FAILURE": 3}


def worst_completion(completions: Iterable[str]) -> str:
    return max(completions, key=lambda c: COMPLETION_RANK.get(c, len(COMPLETION_RANK)))


@dataclass(frozen=True)
class InventoryNode:
    sop_uid: str
    path: Path
    transfer_syntax: str
    header: InventoryHeader
    size: int


@dataclass
class RetrievedInventory:
    """A retrieved Inventory tree, on disk. Read it with studies() / holdings() / study_rows() / study_uids()
    (one pass each, file by file); remove_files() when done."""

    root_uid: str
    nodes: list[InventoryNode]  # the root first
    completion: str  # the worst Inventory Completion Status over the tree
    created: bool  # requested now (Inventory Creation) rather than found
    transaction_status: str = ""  # Transaction Status reported at the end of production ("" if found)
    transaction_comment: str = ""

    @property
    def root(self) -> InventoryHeader:
        return self.nodes[0].header

    @property
    def complete(self) -> bool:
        """The inventory speaks for every study in the scope asked: an expected study absent is missing."""
        return self.completion == "COMPLETE"

    @property
    def partial(self) -> bool:
        """It speaks only for the studies it lists; others are unknown (ARCHIVE_ERROR), not missing."""
        return self.completion == "PARTIAL"

    @property
    def transaction_uid(self) -> str:
        return self.root.transaction_uid

    @property
    def total_records(self) -> int:
        return sum(node.header.records_in_instance or 0 for node in self.nodes)

    @property
    def content_datetime(self) -> datetime | None:
        """When production started: instances stored later cannot be listed."""
        return parse_date_time(self.root.content_date, self.root.content_time)

    def unusable(self) -> str | None:
        """Why the tree cannot be used (a node not at INSTANCE level, FAILURE or CANCELED, records
        missing from the root's total), or None."""
        for node in self.nodes:
            if node.header.level != "INSTANCE":
                return f"Inventory instance {node.sop_uid} is at {node.header.level} level, not INSTANCE"
        if self.completion in ("FAILURE", "CANCELED"):
            return f"Inventory {self.root_uid} says {self.completion}{colon(self.transaction_comment)}"
        if self.root.total_records is not None and self.total_records != self.root.total_records:
            return (f"Inventory {self.root_uid} holds {self.total_records} study records where its root says "
                    f"{self.root.total_records}: tree incomplete")
        return None

    def studies(self) -> Iterator[StudyRecord]:
        for node in self.nodes:
            with _NodeReader(node) as inv:
                yield from inv.studies()

    def holdings(self) -> Iterator[Holding]:
        """Every instance listed, in file order (not key order). A study may appear in several
        records, so an instance may come more than once: the comparer merges duplicates."""
        for study in self.studies():
            yield from study.holdings

    def study_rows(self) -> Iterator[tuple[str, list[HoldingRow]]]:
        """What holdings() lists, as (Study Instance UID, HoldingRows) per study record, in file order."""
        for node in self.nodes:
            with _NodeReader(node) as inv:
                yield from inv.study_rows()

    def study_uids(self) -> Iterator[str]:
        """The Study Instance UIDs listed (a study may appear in several records)."""
        for node in self.nodes:
            with _NodeReader(node) as inv:
                yield from inv.study_uids()

    def remove_files(self) -> None:
        for node in self.nodes:
            node.path.unlink(missing_ok=True)


class _NodeReader:
    """open_inventory as a context manager whose format errors are ArchiveErrors, also mid-stream."""

    def __init__(self, node: InventoryNode) -> None:
        self.node = node

    def __enter__(self):
        try:
            self.inv = open_inventory(self.node.path, self.node.transfer_syntax)
        except (InventoryFormatError, OSError) as exc:
            raise ArchiveError(f"Inventory instance {self.node.sop_uid} unreadable: {exc}") from exc
        return self.inv

    def __exit__(self, exc_type, exc, tb) -> None:
        self.inv.close()
        if isinstance(exc, InventoryFormatError):
            raise ArchiveError(f"Inventory instance {self.node.sop_uid} unreadable: {exc}") from exc
