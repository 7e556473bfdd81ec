"""Repository Query client (PS3.4 C.6.4, Sup 223): the query path's Study Root C-FIND, listed in
bounded transactions that resume where they stopped, and with Removed from Operational Use.

`RepositoryHoldings` proposes Repository Query and Study Root FIND on its association and uses the
first the archive accepts (`model`), so it serves every archive the query path reaches. Over
Repository Query:

- Paging. Each transaction asks for Record Key and at most `page_size` records. B001 ("more matches")
  ends a transaction; the next one continues after the last Record Key received (Prior Record Key)
  with the same keys (the SCP keeps no state between transactions, C.6.4.5.3), so a large study or a
  long study list is never one unbounded C-FIND.
- B001 is final: a conformant SCP sends nothing after it (C.6.4.4, C.6.4.5.2). pynetdicom 3.0's SCU
  would wait for one more response, and its SCP sends a Success after the warning; the stream is
  closed at B001 and the association released, so such a trailing response can never be taken for
  the next query's.
- Resuming. When the association fails mid-transaction (aborted, timed out, closed), the records
  received were a prefix in Record Key order, so the listing goes on after the last one on a new
  association, up to `resume_attempts` times in a row. A response lost locally or a failure status
  is not resumed: the query fails with ArchiveError, as on Study Root.
- Removed from Operational Use (0008,0405) is asked for at STUDY, SERIES and IMAGE level. A Y at a
  higher level supersedes the levels below (C.6.4.1.2) and an SCP need not repeat it at IMAGE level,
  so `instances()` first asks for the study's series (one more small C-FIND per study) and marks
  the instances of a removed study or series removed.
- Record Key values are opaque (C.6.4.1.1): passed back, never parsed or compared.
"""

from __future__ import annotations

import logging
from copy import deepcopy
from dataclasses import replace
from typing import Iterator

from pydicom.dataset import Dataset

from workflow.reconcile.dimse.holdings_query import StudyRootHoldings, removed
from workflow.reconcile.dimse.peer import SUCCESS, ArchiveError
from workflow.reconcile.dimse.sop_classes import REPOSITORY_QUERY
from workflow.reconcile.rules.holdings import Holding, StudyCount
from workflow.reconcile.rules.scope import HoldingsScope

log = logging.getLogger("workflow.holdings_query")

_MORE = 0xB001  # the SCU's or the SCP's limit was reached and more entities match
PAGE_SIZE = 5000  # records asked for per transaction
RESUME_ATTEMPTS = 2  # consecutive interrupted transactions continued before the query fails


class RepositoryHoldings(StudyRootHoldings):
    MODELS = (REPOSITORY_QUERY, *StudyRootHoldings.MODELS)

    def __init__(self, *args, page_size: int = PAGE_SIZE, resume_attempts: int = RESUME_ATTEMPTS, **kwargs):
        super().__init__(*args, **kwargs)
        self.page_size = page_size
        self.resume_attempts = resume_attempts
        self._removed_studies: set[str] = set()
        self._last_key: bytes | None = None
        self.transactions = 0  # C-FIND transactions made over Repository Query
        self.resumed = 0  # of which continued an interrupted one

    @property
    def repository(self) -> bool:
        """Whether Repository Query is in use (known once associated)."""
        return self.model == REPOSITORY_QUERY

    def _find(self, identifier: Dataset, study_uid: str | None = None) -> Iterator[Dataset]:
        self._association(study_uid)
        if not self.repository:
            yield from super()._find(identifier, study_uid)
            return
        prior: bytes | None = None
        failures = 0
        while True:
            ask = deepcopy(identifier)
            ask.RecordKey = b""
            ask.MaximumNumberOfRecords = self.page_size
            if prior is not None:
                ask.PriorRecordKey = prior
            self.transactions += 1
            try:
                final = yield from self._page(ask, study_uid)
            except ArchiveError as exc:
                if not exc.connection or failures >= self.resume_attempts:
                    raise
                failures += 1
                self.resumed += 1
                prior = self._last_key if self._last_key is not None else prior
                log.warning(f"{self.peer}: Repository Query interrupted ({exc.message}); continuing after the "
                            f"last record received (attempt {failures} of {self.resume_attempts})")
                continue
            failures = 0
            if final == SUCCESS:
                return
            # B001 was the SCP's last message for this transaction: release rather than let anything
            # it might still send (pynetdicom's SCP does) meet the next query.
            self.close()
            if self._last_key is None or self._last_key == prior:
                # Nothing, or the same records again (Prior Record Key ignored): it would never end.
                raise ArchiveError(f"{self.peer}: Repository Query answered B001 without advancing past "
                                   "the Prior Record Key", study_uid)
            prior = self._last_key

    def _page(self, ask: Dataset, study_uid: str | None) -> Iterator[Dataset]:
        """One transaction: yields its matches, remembering the last one's Record Key in `_last_key`;
        returns the final status (Success or B001)."""
        self._last_key = None
        transaction = self._transaction(ask, study_uid, final=(SUCCESS, _MORE))
        while True:
            try:
                match = next(transaction)
            except StopIteration as end:
                return end.value
            key = match.get("RecordKey")
            if not key:
                transaction.close()
                raise ArchiveError(f"{self.peer}: Repository Query match without Record Key", study_uid)
            yield match
            self._last_key = bytes(key)

    # -- Removed from Operational Use at every level -------------------------------------------

    def _asked(self, query: Dataset) -> Dataset:
        if self.repository:
            query.RemovedFromOperationalUse = ""
        return query

    def studies(self, scope: HoldingsScope | None = None) -> Iterator[StudyCount]:
        self._association()  # the model decides the keys
        self._removed_studies.clear()
        yield from super().studies(scope)

    def _study_counts(self, matches: Iterator[Dataset], earlier: set[str]) -> Iterator[StudyCount]:
        def noting(matches: Iterator[Dataset]) -> Iterator[Dataset]:
            for match in matches:
                if removed(match):
                    self._removed_studies.add(str(match.get("StudyInstanceUID", "")))
                yield match
        return super()._study_counts(noting(matches), earlier)

    def instances(self, study_uid: str, series_uid: str | None = None) -> Iterator[Holding]:
        self._association(study_uid)
        if not self.repository:
            yield from super().instances(study_uid, series_uid)
            return
        whole_study = study_uid in self._removed_studies
        removed_series = set() if whole_study else {
            str(m.get("SeriesInstanceUID", "")) for m in self._series_matches(study_uid) if removed(m)}
        for holding in super().instances(study_uid, series_uid):
            if not holding.removed and (whole_study or holding.series_uid in removed_series):
                holding = replace(holding, removed=True)
            yield holding
