"""Study Root C-FIND client: streams what an archive actually holds, study by study.

One association per `StudyRootHoldings` (a context manager). Responses are consumed as they arrive
(pynetdicom's `send_c_find` is a generator), never collected, so listing a large archive costs
constant memory. Records come in the archive's order; callers that need key order spool and sort.

Anything that prevents a complete answer raises `ArchiveError` (association refused, rejected or
aborted, a C-FIND failure or cancel status, no response within `timeout`, an undecodable or incomplete
response). Records already yielded for that query are then incomplete: the caller records
ARCHIVE_ERROR for what it was checking and must not report those instances missing.

Choices:
- Re-association: before each query, if the association is gone (the archive closed it, or we released
  it after `timeout` idle seconds), associate again, once. A query that fails mid-stream is not retried:
  records already yielded cannot be taken back, so the caller decides.
- Abandoning a stream (breaking out of the loop, an exception in the consumer) aborts the association:
  the pending responses cannot be skipped otherwise; the next query re-associates.
- Modalities: one query per modality by default (single-value matching is what every SCP supports);
  a study with several of the asked modalities is reported once, by the query for the first of them
  it contains (from the returned Modalities in Study), so no set of seen studies is kept. Archives that
  support multiple-value matching (Orthanc does) can get one query with `multi_valued_modalities=True`.
- Study UIDs: List of UID matching (allowed at the query level by the baseline hierarchical search,
  PS3.4 C.4.1.2.1), `uid_batch` UIDs per query.
- Retrieve AE Title is read from every response but not sent as a key: PS3.4 C.4.1.1.3.2 makes it a
  response attribute the SCP adds, and Orthanc 1.10 echoes it empty when it is asked for.
- pynetdicom 3.0 race (cf. pynetdicom issue #875): its reactor thread can take a C-FIND response off
  the queue just after a request is sent and drop it ("Received unexpected C-FIND service message"),
  ~0.3% of queries on one association here; a lost match would look like a missing instance. Before
  each request we hold the reactor until it is blocked (`workflow.dimse.reactor.hold_reactor`), and any response it still
  takes makes the query fail with ArchiveError (`StrayCounter`), never a silently short answer.
- IMAGE level queries give the Study UID only (Series UID universal), as Orthanc and most archives
  accept; `instances(study, series_uid=...)` gives a strict hierarchical query for one series.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from datetime import date
from typing import Iterator, NamedTuple

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association

from workflow.dimse.reactor import StrayCounter, held, release
from workflow.reconcile.dimse.peer import PENDING, SUCCESS, ArchiveError, ArchivePeer, status_comment
from workflow.reconcile.dimse.sop_classes import STUDY_ROOT_FIND
from workflow.reconcile.rules.dicom_values import text_values
from workflow.reconcile.rules.holdings import Holding, StudyCount
from workflow.reconcile.rules.scope import HoldingsScope

log = logging.getLogger("workflow.holdings_query")


class SeriesCount(NamedTuple):
    series_uid: str
    modality: str
    instance_count: int | None


class StudyRootHoldings:
    """`with StudyRootHoldings("WFM", "PACS", host, port) as archive: for s in archive.studies(): ...`

    Use one query at a time: finish (or abandon) one iterator before starting the next."""

    # Information models proposed, the first one the archive accepts is used (`model`).
    MODELS: tuple[str, ...] = (STUDY_ROOT_FIND,)

    def __init__(self, ae_title_local: str, remote_ae: str, host: str, port: int, timeout: float = 30.0,
                 *, multi_valued_modalities: bool = False, uid_batch: int = 100, tls_args: tuple | None = None):
        self.archive = ArchivePeer(ae_title_local, remote_ae, host, port, timeout, tls_args=tls_args)
        self.timeout = timeout
        self.multi_valued_modalities = multi_valued_modalities
        self.uid_batch = uid_batch
        for model in self.MODELS:
            self.archive.ae.add_requested_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.model: str | None = None
        self._assoc: Association | None = None
        self._strays: StrayCounter | None = None  # responses pynetdicom's reactor took on `_assoc`

    # -- association ---------------------------------------------------------------------------

    def __enter__(self) -> "StudyRootHoldings":
        return self.open()

    def open(self) -> "StudyRootHoldings":
        """Associate now (else at the first query): `model` then says which model is in use."""
        self._association()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        assoc, self._assoc = self._assoc, None
        release(assoc)

    @property
    def peer(self) -> str:
        return self.archive.name

    def _association(self, study_uid: str | None = None) -> Association:
        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        if self._assoc is not None:
            log.info(f"association with {self.peer} was closed; associating again")
        assoc = self.archive.connect(study_uid=study_uid)
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        chosen = next((m for m in self.MODELS if m in accepted), None)
        if chosen is None:
            release(assoc)
            raise ArchiveError(f"{self.peer} does not accept Study Root C-FIND", study_uid)
        self.model = chosen
        # Idle for `timeout` between queries: release politely rather than abort; the next query
        # re-associates.
        assoc.network_timeout_response = "A-RELEASE"
        self._strays = StrayCounter(assoc)
        self._assoc = assoc
        return assoc

    # -- the C-FIND stream ---------------------------------------------------------------------

    def _find(self, identifier: Dataset, study_uid: str | None = None) -> Iterator[Dataset]:
        """The matches of one C-FIND, as they arrive; ArchiveError unless it ends with Success."""
        yield from self._transaction(identifier, study_uid)

    def _transaction(self, identifier: Dataset, study_uid: str | None = None,
                     final: tuple[int, ...] = (SUCCESS,)) -> Iterator[Dataset]:
        """One C-FIND: yields the matches and returns the final status, which must be one of `final`.
        The first status that is not Pending ends it: nothing more is read from the association."""
        assoc = self._association(study_uid)
        stray_counter = self._strays
        strays = stray_counter.count
        finished = False
        with held(assoc):
            try:
                responses = assoc.send_c_find(identifier, self.model, msg_id=self.archive.next_msg_id())
            except RuntimeError as exc:  # the association ended just now (released after idling)
                raise ArchiveError(f"{self.peer}: {exc}", study_uid, connection=True) from exc
            waited_since = time.monotonic()
            try:
                for status, match in responses:
                    code = status.get("Status")
                    if code is None:  # pynetdicom: DIMSE timeout, abort or invalid response; dropped below
                        waited = time.monotonic() - waited_since
                        what = (f"no C-FIND response within {self.timeout:g} s" if waited >= 0.9 * self.timeout
                                else "association aborted or invalid C-FIND response")
                        raise ArchiveError(f"{self.peer}: {what}", study_uid, connection=True)
                    if code in PENDING:
                        if match is None:
                            raise ArchiveError(f"{self.peer}: undecodable C-FIND response", study_uid)
                        yield match
                        waited_since = time.monotonic()
                        continue
                    finished = True
                    if stray_counter.count != strays:
                        raise ArchiveError(f"{self.peer}: a C-FIND response was lost locally "
                                           "(pynetdicom reactor race); answer incomplete", study_uid)
                    if code not in final:
                        raise ArchiveError(f"{self.peer}: C-FIND status 0x{code:04X}{status_comment(status)}",
                                           study_uid)
                    return code
                raise ArchiveError(f"{self.peer}: C-FIND ended without a final status", study_uid, connection=True)
            finally:
                responses.close()  # pynetdicom would wait for more after a warning such as B001
                if not finished:
                    # Abandoned or failed mid-stream: pending responses would confuse the next query.
                    self._drop(assoc)

    def _drop(self, assoc: Association) -> None:
        if assoc.is_established:
            assoc.abort()
        self._assoc = None

    # -- queries -------------------------------------------------------------------------------

    def studies(self, scope: HoldingsScope | None = None) -> Iterator[StudyCount]:
        """The studies in scope, with the series and instance counts the archive reports."""
        scope = scope or HoldingsScope()
        batches = ([list(scope.study_uids[i:i + self.uid_batch])
                    for i in range(0, len(scope.study_uids), self.uid_batch)]
                   if scope.study_uids else [None])
        modalities = [m.strip().upper() for m in scope.modalities if m.strip()]
        if not modalities or self.multi_valued_modalities:
            rounds: list[list[str]] = [modalities]
        else:
            rounds = [[m] for m in modalities]
        for uids in batches:
            earlier: set[str] = set()
            for asked in rounds:
                query = self._asked(_study_query(uids, scope.since, asked))
                with closing(self._find(query, uids[0] if uids and len(uids) == 1 else None)) as matches:
                    yield from self._study_counts(matches, earlier)
                earlier.update(asked)

    def _study_counts(self, matches: Iterator[Dataset], earlier: set[str]) -> Iterator[StudyCount]:
        for match in matches:
            if earlier and earlier & set(text_values(match.get("ModalitiesInStudy"))):
                continue  # reported by the query for an earlier modality
            yield StudyCount(study_uid=_required(match, "StudyInstanceUID", self.peer, None),
                             series_count=_count(match, "NumberOfStudyRelatedSeries"),
                             instance_count=_count(match, "NumberOfStudyRelatedInstances"))

    def series(self, study_uid: str) -> Iterator[SeriesCount]:
        for match in self._series_matches(study_uid):
            yield SeriesCount(_required(match, "SeriesInstanceUID", self.peer, study_uid),
                              _text(match, "Modality"), _count(match, "NumberOfSeriesRelatedInstances"))

    def _series_matches(self, study_uid: str) -> Iterator[Dataset]:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = ""
        query.Modality = ""
        query.NumberOfSeriesRelatedInstances = ""
        with closing(self._find(self._asked(query), study_uid)) as matches:
            yield from matches

    def instances(self, study_uid: str, series_uid: str | None = None) -> Iterator[Holding]:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid or ""
        query.SOPInstanceUID = ""
        query.SOPClassUID = ""
        query.InstanceAvailability = ""
        query.RetrieveURL = ""
        with closing(self._find(self._asked(query), study_uid)) as matches:
            for match in matches:
                yield self._holding(match, study_uid, series_uid)

    def _asked(self, query: Dataset) -> Dataset:
        """The keys of a query as sent over the model in use (a subclass may ask for more)."""
        return query

    def _holding(self, match: Dataset, study_uid: str, series_uid: str | None) -> Holding:
        return Holding(
            study_uid=study_uid,
            series_uid=series_uid or _required(match, "SeriesInstanceUID", self.peer, study_uid),
            sop_uid=_required(match, "SOPInstanceUID", self.peer, study_uid),
            sop_class_uid=_text(match, "SOPClassUID"),
            availability=_text(match, "InstanceAvailability").upper(),
            # Several Retrieve AE Titles are kept in DICOM's multi-value form, "A\\B".
            retrieve_ae=_text(match, "RetrieveAETitle"),
            retrieve_url=_text(match, "RetrieveURL"),
            removed=removed(match),  # only Repository Query asks for it
        )


def _study_query(uids: list[str] | None, since: date | None, modalities: list[str]) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = uids if uids else ""
    query.StudyDate = f"{since:%Y%m%d}-" if since else ""
    query.ModalitiesInStudy = modalities if modalities else ""
    query.NumberOfStudyRelatedSeries = ""
    query.NumberOfStudyRelatedInstances = ""
    return query


def removed(ds: Dataset) -> bool:
    """Removed from Operational Use (0008,0405) says Y."""
    return _text(ds, "RemovedFromOperationalUse").upper() == "Y"


def _text(ds: Dataset, keyword: str) -> str:
    return "\\".join(text_values(ds.get(keyword)))


def _count(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _required(ds: Dataset, keyword: str, peer: str, study_uid: str | None) -> str:
    # A match without its unique key cannot be attributed: treat the answer as unusable rather
    # than let the instance look missing.
    value = _text(ds, keyword)
    if not value:
        raise ArchiveError(f"{peer}: C-FIND response without {keyword}", study_uid)
    return value
