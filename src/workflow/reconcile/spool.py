"""A disk-backed sorter for archive holdings: archives answer in any order, the merge-join needs key
order. Records go into a throwaway SQLite file (its own temporary directory, no journal, no fsync:
nothing here must survive a crash) and come back sorted by (Study, Series, SOP Instance UID) in
chunks, so memory stays bounded whatever the number of records.

Duplicate keys (an instance listed twice, e.g. its study in two inventory records) come back as one
record, merged by `workflow.reconcile.rules.compare.merge_runs`: the best availability, removed if any
record says so, the union of Retrieve AE Titles, otherwise the later non-empty value. The comparer
applies the same rule, so spooled or not, duplicates mean the same thing.

    with HoldingSpool() as spool:
        spool.add_many(records)
        for holding in spool.sorted(): ...
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from workflow.reconcile.rules.holdings import Holding
from workflow.reconcile.rules.compare import merge_runs

_COLUMNS = "study, series, sop, sop_class, availability, retrieve_ae, retrieve_url, removed"


class HoldingSpool:
    """Holdings spooled to disk. Not thread-safe; one spool per run (or per study)."""

    def __init__(self, directory: str | Path | None = None, *, batch: int = 5000, chunk: int = 2000,
                 cache_kib: int = 8192) -> None:
        # The file lives in a directory of its own, removed on close with whatever SQLite left there.
        self._dir = Path(tempfile.mkdtemp(prefix="wfm-spool-", dir=directory))
        self._batch, self._chunk = batch, chunk
        self._db = sqlite3.connect(self._dir / "holdings.db", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       f"cache_size=-{cache_kib}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        # A heap in arrival order (n is the rowid): appends are cheap. The sort happens once, when the
        # first read builds a covering index (measured: 2x faster than inserting into a table
        # clustered on the key, whose random inserts miss the small cache).
        self._db.execute(f"CREATE TABLE holding (n INTEGER PRIMARY KEY, {_COLUMNS})")
        self._indexed = False
        self.count = 0  # records added (before merging duplicates)

    # -- writing --

    def add(self, holding: Holding) -> None:
        self.add_many((holding,))

    def add_many(self, holdings: Iterable[Holding]) -> int:
        """Spool records in batches, one transaction each; returns how many were added."""
        added = 0
        it = iter(holdings)
        while batch := list(islice(it, self._batch)):
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT INTO holding (n, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 [(self.count + added + i, h.study_uid, h.series_uid, h.sop_uid, h.sop_class_uid,
                                   h.availability, h.retrieve_ae, h.retrieve_url, int(h.removed))
                                  for i, h in enumerate(batch)])
            self._db.execute("COMMIT")
            added += len(batch)
        self.count += added
        return added

    # -- reading --

    def sorted(self, study_uid: str | None = None) -> Iterator[Holding]:
        """Every record (or one study's) in key order, duplicates merged. Later `add`s are seen by
        the next call; a call's iterator must be finished or dropped before the next `add`."""
        # n (arrival order) breaks ties: duplicates meet in the order they came, so "later" in the
        # merge is well defined.
        self._ensure_index()
        where, args = ("WHERE study = ?", (study_uid,)) if study_uid is not None else ("", ())
        cur = self._db.execute(f"SELECT {_COLUMNS} FROM holding {where} ORDER BY study, series, sop, n", args)

        def rows() -> Iterator[Holding]:
            while chunk := cur.fetchmany(self._chunk):
                for row in chunk:
                    yield Holding(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))
        try:
            yield from merge_runs(rows())
        finally:
            cur.close()

    def studies(self) -> Iterator[str]:
        """Distinct Study Instance UIDs, sorted."""
        self._ensure_index()
        cur = self._db.execute("SELECT DISTINCT study FROM holding ORDER BY study")
        try:
            while rows := cur.fetchmany(self._chunk):
                for (study,) in rows:
                    yield study
        finally:
            cur.close()

    def _ensure_index(self) -> None:
        # Built by SQLite's external sorter (bounded memory; it spills to unlinked temporary files);
        # later adds keep it up to date. It covers every column, so a read never goes back to the
        # heap, and n comes right after the key, so duplicates meet in arrival order.
        if not self._indexed:
            self._db.execute("CREATE INDEX holding_key ON holding (study, series, sop, n, sop_class, availability, "
                             "retrieve_ae, retrieve_url, removed)")
            self._indexed = True

    # -- lifetime --

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> HoldingSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
