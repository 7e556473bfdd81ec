"""A disk-backed sorter for an archive's study records: archives answer in any order, the comparison
needs study order. Each record (a study's instances as `HoldingRow` tuples, as an Inventory study
record lists them) goes into a throwaway SQLite file (its own temporary directory, no journal, no
fsync: nothing here must survive a crash) as one row, and comes back by Study Instance UID, so memory
holds one study at a time whatever the number of records.

One row per study record, not per instance: a million instances are ten thousand rows to sort, and
each record is one `marshal` blob (a fast C encoding of tuples of strings, shared strings once; the
file is this process's own, never read from elsewhere). A study listed in several records comes back
once, its records' rows joined in arrival order; so do the duplicate instances such records may hold,
which the comparer merges (`workflow.reconcile.rules.compare.merge_runs`: "later" is arrival order).

    with StudySpool() as spool:
        spool.add_many(records)                # (study_uid, rows) in any order
        for study_uid, rows in spool.sorted(): ...   # study order, rows in arrival order
"""

from __future__ import annotations

import marshal
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from workflow.reconcile.rules.holdings import HoldingRow


class StudySpool:
    """Study records spooled to disk. Not thread-safe; one spool per run."""

    def __init__(self, directory: str | Path | None = None, *, batch: int = 200, cache_kib: int = 8192) -> None:
        # The file lives in a directory of its own, removed on close with whatever SQLite left there.
        self._dir = Path(tempfile.mkdtemp(prefix="wfm-spool-", dir=directory))
        self._batch = batch
        self._db = sqlite3.connect(self._dir / "records.db", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       f"cache_size=-{cache_kib}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        # A heap in arrival order (n is the rowid); the index on (study, n) is built at the first read.
        self._db.execute("CREATE TABLE record (n INTEGER PRIMARY KEY, study TEXT NOT NULL, rows BLOB NOT NULL)")
        self._indexed = False
        self.records = 0  # study records added
        self.count = 0  # instances added (before merging duplicates)

    # -- writing --

    def add(self, study_uid: str, rows: list[HoldingRow]) -> None:
        self.add_many(((study_uid, rows),))

    def add_many(self, records: Iterable[tuple[str, list[HoldingRow]]]) -> int:
        """Spool (study_uid, rows) records, `batch` records per transaction; returns the instances added."""
        added, batch = 0, []
        for study_uid, rows in records:
            batch.append((self.records + len(batch), study_uid, marshal.dumps(rows)))
            added += len(rows)
            if len(batch) >= self._batch:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)
        self.count += added
        return added

    def _write(self, batch: list[tuple]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO record (n, study, rows) VALUES (?, ?, ?)", batch)
        self._db.execute("COMMIT")
        self.records += len(batch)

    # -- reading --

    def sorted(self) -> Iterator[tuple[str, list[HoldingRow]]]:
        """Every study once, in Study Instance UID order (code points, as Python compares), with the rows
        of all its records in arrival order (not sorted: the comparer sorts a study's rows). Later adds
        are seen by the next call; a call's iterator must be finished or dropped before the next add."""
        self._ensure_index()
        cur = self._db.execute("SELECT study, rows FROM record ORDER BY study, n")
        try:
            study, rows = None, []
            while chunk := cur.fetchmany(64):
                for uid, blob in chunk:
                    if uid != study:
                        if study is not None:
                            yield study, rows
                        study, rows = uid, marshal.loads(blob)
                    else:
                        rows.extend(marshal.loads(blob))
            if study is not None:
                yield study, rows
        finally:
            cur.close()

    def studies(self) -> Iterator[str]:
        """Distinct Study Instance UIDs, sorted."""
        self._ensure_index()
        cur = self._db.execute("SELECT DISTINCT study FROM record ORDER BY study")
        try:
            while rows := cur.fetchmany(1000):
                for (study,) in rows:
                    yield study
        finally:
            cur.close()

    def _ensure_index(self) -> None:
        # Later adds keep it up to date. n right after the study: records meet in arrival order.
        if not self._indexed:
            self._db.execute("CREATE INDEX record_study ON record (study, n)")
            self._indexed = True

    # -- lifetime --

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> StudySpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
