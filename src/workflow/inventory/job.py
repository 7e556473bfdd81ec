"""`wfm inventory build`, composed: the reconciliation query path's Study Root C-FIND client, asked for
the study attributes an Inventory's study records carry, wired to the crawl and the production (the
services stay free of DIMSE; this module wires the client to them, as reconcile/job.py does)."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Iterator

from pydicom.dataset import Dataset
from sqlalchemy import Engine

from workflow.config import Settings
from workflow.inventory.crawl import CrawlService, CrawlStopped
from workflow.inventory.produce import Built, produce
from workflow.inventory.rules.iod import InstanceFacts, SeriesFacts, StudyFacts
from workflow.reconcile.rules.dicom_values import text_values
from workflow.reconcile.rules.scope import HoldingsScope

RECORD_LIMIT = 1000  # study records per Inventory SOP instance before it is split

_STUDY_KEYS = {"StudyDate": "study_date", "StudyTime": "study_time", "StudyID": "study_id",
               "StudyDescription": "study_description", "AccessionNumber": "accession_number",
               "PatientName": "patient_name", "PatientID": "patient_id", "PatientBirthDate": "patient_birth_date",
               "PatientSex": "patient_sex"}


@dataclass(frozen=True)
class Archive:
    ae_title: str
    host: str
    port: int
    retrieve_ae_title: str = ""  # the Retrieve AE Title its IANs name, when not its AE title

    @property
    def retrieve_ae(self) -> str:
        return self.retrieve_ae_title or self.ae_title


def _text(ds: Dataset, keyword: str) -> str:
    return "\\".join(text_values(ds.get(keyword)))


def study_root_lister(local_ae: str, archive: Archive, timeout: float):
    """The query path's Study Root client (one association, re-associating when the archive closes
    it, every answer checked complete), asking for the study record's attributes too."""
    from workflow.reconcile.dimse.holdings_query import StudyRootHoldings
    from workflow.reconcile.dimse.peer import ArchiveError

    class StudyRootLister(StudyRootHoldings):
        def _asked(self, query: Dataset) -> Dataset:
            level = query.QueryRetrieveLevel
            if level == "STUDY":
                for keyword in _STUDY_KEYS:
                    if keyword not in query:
                        setattr(query, keyword, "")
            elif level == "SERIES":
                query.SeriesNumber = ""
            return query

        def _study_counts(self, matches, earlier) -> Iterator[StudyFacts]:
            for match in matches:
                if earlier and earlier & set(text_values(match.get("ModalitiesInStudy"))):
                    continue  # reported by the query for an earlier modality
                uid = _text(match, "StudyInstanceUID")
                if not uid:
                    raise ArchiveError(f"{self.peer}: C-FIND response without StudyInstanceUID")
                yield StudyFacts(uid, **{field: _text(match, keyword) for keyword, field in _STUDY_KEYS.items()})

        def contents(self, study_uid: str) -> tuple[SeriesFacts, ...]:
            series = {}
            for match in self._series_matches(study_uid):
                series[_text(match, "SeriesInstanceUID")] = (_text(match, "Modality"), _text(match, "SeriesNumber"))
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID = study_uid
            query.SeriesInstanceUID = ""
            query.SOPInstanceUID = ""
            query.SOPClassUID = ""
            query.InstanceNumber = ""
            query.InstanceAvailability = ""
            instances: dict[str, list[InstanceFacts]] = {}
            with closing(self._find(query, study_uid)) as matches:
                for match in matches:
                    sop_uid, series_uid = _text(match, "SOPInstanceUID"), _text(match, "SeriesInstanceUID")
                    if not sop_uid or not series_uid:
                        raise ArchiveError(f"{self.peer}: IMAGE-level answer without its UIDs", study_uid)
                    instances.setdefault(series_uid, []).append(InstanceFacts(
                        _text(match, "SOPClassUID"), sop_uid, _text(match, "InstanceNumber"),
                        _text(match, "InstanceAvailability").upper()))
            return tuple(SeriesFacts(uid, *series.get(uid, ("", "")), tuple(found))
                         for uid, found in sorted(instances.items()))

    return StudyRootLister(local_ae, archive.ae_title, archive.host, archive.port, timeout=timeout), ArchiveError


def build(settings: Settings, engine: Engine, archive: Archive, *, days: int | None = None,
          modalities: tuple[str, ...] = (), record_limit: int = RECORD_LIMIT,
          progress: Callable[[str], None] = lambda message: None, lister=None) -> tuple[Built, bool]:
    """Crawl (or resume crawling) `archive` and store its inventory; (what was built, resumed?).
    Raises CrawlStopped when the archive stopped answering (the next call resumes)."""
    scope = HoldingsScope(since=date.today() - timedelta(days=days) if days else None, modalities=modalities)
    if lister is None:
        lister, archive_error = study_root_lister(settings.ae_title, archive, settings.network_timeout)
    else:
        from workflow.reconcile.dimse.peer import ArchiveError as archive_error
    service = CrawlService(engine, archive_error, progress)
    crawl_id, resumed = service.open(archive.ae_title, scope)
    progress(("resuming the crawl" if resumed else "crawling") + f" of {archive.ae_title} by Study Root C-FIND")
    try:
        counts = service.crawl(crawl_id, lister, scope)
    finally:
        lister.close()
    progress(f"{counts['DONE']} studies listed, {counts['FAILED']} could not be")
    built = produce(engine, crawl_id, archive.ae_title, scope, method="Study Root C-FIND",
                    record_limit=record_limit, station_name=settings.ae_title, retrieve_ae=archive.retrieve_ae)
    return built, resumed


__all__ = ["Archive", "CrawlStopped", "build"]
