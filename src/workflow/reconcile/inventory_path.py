"""A reconciliation run through the Inventory path: the archive's whole inventory (any order, any
size) against every instance IANs announced at that archive, in one merge-join.

The archive's study records go through a disk spool that hands them back in study order; the expected
side is read from the database in study order, in chunks. Memory holds one study of each side at a
time. Both sides are plain tuples (`HoldingRow`), compared a study at a time: a study whose two sides
are equal as lists of tuples is all matches, found without an object per instance (the comparison of
a million instances is otherwise mostly the making of a million objects). The run's cut-off is the
earlier of the run's start and the time the inventory was taken (an inventory found ready-made may be
hours old): an instance announced after it could not be in it, and is compared with nothing.

What the inventory cannot speak for is never reported missing: with a PARTIAL inventory, or a scope
the archive applied by Study Date (which IANs do not carry), an announced study the inventory does
not list is one ARCHIVE_ERROR finding. The archive client is passed in as a `Source` so that this
module stays free of DIMSE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
import threading
from itertools import chain, groupby
from operator import itemgetter
from typing import Callable, Iterator, Protocol

from sqlalchemy import Engine, Integer, func, select, type_coerce

from workflow.ian.tables import Instance, InstanceLocation
from workflow.reconcile import reports
from workflow.reconcile.rules.compare import Comparer, Rules, Tally, pair_studies
from workflow.reconcile.rules.holdings import HoldingRow
from workflow.reconcile.runs import Archive, RunResult, Scope, end_run, record, start_run
from workflow.reconcile.spool import StudySpool
from workflow.reconcile.tables import COMPLETED, FAILED
from workflow.store.engine import aware, is_sqlite, reading

log = logging.getLogger("workflow.reconcile")
I, L = Instance.__table__, InstanceLocation.__table__
CHUNK = 5000  # expected rows fetched at a time
PARTIAL = "PARTIAL"


@dataclass(frozen=True)
class Inventory:
    """An inventory fetched from the archive, as this module needs it."""

    inventory_uid: str
    completion_status: str  # COMPLETE or PARTIAL (FAILURE and CANCELED never get this far)
    taken_at: datetime | None  # when the archive took it (Content Date and Time); None: unknown
    # Every study record of the tree as (Study Instance UID, its instances as HoldingRows), in any order.
    records: Callable[[], Iterator[tuple[str, list[HoldingRow]]]]


class Source(Protocol):
    def fetch(self, progress: Callable[[str], None]) -> Inventory:
        """Find or create the inventory and retrieve it; raises the client's archive error."""


class InventoryReconciler:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 spool_dir: str | None = None) -> None:
        self.engine, self.clock, self.spool_dir = engine, clock, spool_dir

    def run(self, archive: Archive, source: Source, scope: Scope = Scope(), rules: Rules = Rules(),
            progress: Callable[[str], None] = lambda message: None, archive_error=Exception) -> RunResult:
        started = self.clock()
        with self.engine.begin() as conn:
            run_id, run_uid = start_run(conn, archive, "inventory", scope, started)
        log.info(f"reconciliation {run_uid} of {archive.ae_title} started (inventory)")
        comparer = Comparer(rules, Tally())
        status, error, detail = COMPLETED, None, None
        try:
            inventory = source.fetch(progress)
            cutoff = min(started, aware(inventory.taken_at)) if inventory.taken_at else started
            detail = f"inventory {inventory.inventory_uid} ({inventory.completion_status})"
            with self.engine.begin() as conn:
                reports.set_source(conn, run_id, cutoff, {
                    "inventory_uid": inventory.inventory_uid, "completion_status": inventory.completion_status,
                    "taken_at": inventory.taken_at.isoformat() if inventory.taken_at else None})
            # PostgreSQL sorts the expected side (a million rows: seconds) before its first row comes
            # back: the query starts now, in a thread, while this one reads the archive's records (when
            # it needs nothing from them). SQLite walks an index: its first row comes at once.
            ahead = None
            if not scope.modalities and self.engine.dialect.name == "postgresql":
                ahead = _Ahead(self._expected(archive, scope, cutoff, None))
            try:
                with StudySpool(self.spool_dir) as spool:
                    added = spool.add_many(_counted(inventory.records(), progress))
                    progress(f"{added} archive records read; comparing")
                    record(self.engine, run_id, self._findings(archive, scope, cutoff, comparer, spool, inventory,
                                                               progress, run_id, ahead))
            finally:
                if ahead is not None:
                    ahead.close()
        except archive_error as exc:
            status, error = FAILED, f"the inventory could not be obtained: {exc}"
        return end_run(self.engine, run_id, run_uid, archive, comparer.tally, status, error, detail)

    def _findings(self, archive: Archive, scope: Scope, cutoff: datetime, comparer: Comparer, spool: StudySpool,
                  inventory: Inventory, progress, run_id: int, expected: Iterator | None = None) -> Iterator:
        # Announced studies the inventory does not list, and cannot be taken to deny holding. (Our
        # study list is a whole scan of the expected side: read only when it is needed.)
        why = _unlisted_reason(inventory, scope)
        errors = {}
        if why:
            expected_studies = self._expected_studies(archive, scope, cutoff)
            errors = {p.study_uid: why for p in pair_studies(expected_studies, spool.studies())
                      if p.expected and not p.actual}
        if expected is None:
            listed = None if not scope.modalities else set(spool.studies())
            expected = self._expected(archive, scope, cutoff, listed)
        yield from comparer.compare_studies(_alive(expected, self.engine, run_id, progress), spool.sorted(), errors)

    def _expected_query(self, archive: Archive, scope: Scope, cutoff: datetime):
        query = (select(I.c.study_instance_uid, I.c.series_instance_uid, I.c.sop_instance_uid, I.c.sop_class_uid,
                        L.c.availability, L.c.retrieve_url, L.c.notified_at)
                 .join(L, L.c.instance_id == I.c.id)
                 .where(L.c.retrieve_ae_title == archive.retrieve_ae))
        if scope.study_uids:
            query = query.where(I.c.study_instance_uid.in_(scope.study_uids))
        if scope.days is not None:
            query = query.where(I.c.first_notified_at >= cutoff - timedelta(days=scope.days))
        return query

    def _expected_studies(self, archive: Archive, scope: Scope, cutoff: datetime) -> list[str]:
        query = self._expected_query(archive, scope, cutoff).with_only_columns(I.c.study_instance_uid).distinct()
        with reading(self.engine) as conn:
            return sorted(conn.execute(query).scalars())  # one string per study, sorted in Python's order

    def _expected(self, archive: Archive, scope: Scope, cutoff: datetime, listed: set[str] | None
                  ) -> Iterator[tuple[str, list[HoldingRow]]]:
        """Every expected instance as a HoldingRow (flag: not settled), grouped by study in study order
        (byte order: on PostgreSQL the "C" collation, so the database sorts as Python compares), read in
        chunks on one connection (a server-side cursor on PostgreSQL). Within a study the comparer
        sorts, so the database orders by study alone (on SQLite, the walk of an index: no sort at all)."""
        # Settled or not is decided by the database: converting a million timestamps back to aware
        # datetimes only to compare them was a tenth of the comparison's time. An integer, not a
        # Boolean: no result processor per row on SQLite. The Retrieve AE Title selected is the one
        # the query asks for: rows compare as tuples with the archive's.
        unsettled = type_coerce(L.c.notified_at > cutoff, Integer)
        query = (self._expected_query(archive, scope, cutoff)
                 .with_only_columns(I.c.study_instance_uid, I.c.series_instance_uid, I.c.sop_instance_uid,
                                    L.c.availability, L.c.retrieve_ae_title, func.coalesce(L.c.retrieve_url, ""),
                                    unsettled))
        query = query.order_by(I.c.study_instance_uid)  # code points on both backends (store/types.py)
        with reading(self.engine) as conn:
            if is_sqlite(self.engine):
                # sqlite3's cursor is lazy, and without yield_per SQLAlchemy reads nothing ahead: the
                # driver's own tuples are taken from its cursor, without a Row made (and undone) per
                # row, a third of reading a million. (Were a row ever read ahead, the golden-report
                # and bench findings would show it missing.)
                result = conn.execute(query)
                cursor = result.cursor
                rows = chain.from_iterable(iter(lambda: cursor.fetchmany(CHUNK), []))
            else:  # a server-side cursor, which SQLAlchemy reads ahead of: its rows
                # Every row is read: a cursor's plan is otherwise made to return its first tenth soonest,
                # which the UID index's order invites (a nested loop over a million index probes).
                conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
                result = conn.execution_options(yield_per=CHUNK).execute(query)
                rows = chain.from_iterable(map(tuple, part) for part in result.partitions())
            try:
                for study_uid, group in groupby(rows, _STUDY):
                    if listed is not None and study_uid not in listed:
                        continue  # a modality scope: only the archive knows a study's modalities
                    yield study_uid, list(group)
            finally:
                result.close()


_STUDY = itemgetter(0)
_END = object()


class _Ahead:
    """An iterator whose first item is fetched in a thread started at once (its wait for a database is
    spent beside other work); then iterated in the caller's thread. One thread at a time uses it."""

    def __init__(self, items: Iterator) -> None:
        self._items, self._first, self._error = items, _END, None
        self._thread = threading.Thread(target=self._fetch, name="wfm-reconcile-expected", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            self._first = next(self._items, _END)
        except BaseException as exc:  # raised again in the caller's thread
            self._error = exc

    def __iter__(self) -> Iterator:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._first is not _END:
            yield self._first
            yield from self._items

    def close(self) -> None:
        self._thread.join()
        self._items.close()


def _unlisted_reason(inventory: Inventory, scope: Scope) -> str | None:
    if inventory.completion_status == PARTIAL:
        return "the archive's inventory is PARTIAL and does not list this study"
    if scope.days is not None:
        return (f"the inventory covers studies of the last {scope.days} days by Study Date, which IANs do not "
                "carry; it does not list this study")
    return None


def _counted(records: Iterator[tuple[str, list]], progress, every: int = 100_000) -> Iterator[tuple[str, list]]:
    n, next_report = 0, every
    for study in records:
        n += len(study[1])
        if n >= next_report:
            progress(f"{n} archive records read")
            next_report = (n // every + 1) * every
        yield study


def _alive(expected: Iterator[tuple[str, list]], engine: Engine, run_id: int, progress, every: int = 100_000
           ) -> Iterator[tuple[str, list]]:
    """The expected stream, with a heartbeat and a progress line every `every` instances or so: a long
    comparison that finds nothing must still show that its run is alive."""
    n, next_report = 0, every
    for study in expected:
        n += len(study[1])
        if n >= next_report:
            progress(f"{n} expected instances compared")
            next_report = (n // every + 1) * every
            with engine.begin() as conn:
                reports.heartbeat(conn, run_id)
        yield study
