"""The crawl behind `wfm inventory build`: list an archive's studies in scope, then each study's series
and instances, keeping every answer in the database as it comes, so that an interrupted crawl (the
archive went away, the command was stopped) resumes where it stopped when the same command runs again.

1. The study list (one C-FIND at STUDY level) becomes one PENDING row per study; the crawl records
   when the list was complete. A list that breaks off is asked again on resume (rows already there stay).
2. Each PENDING study is listed (SERIES and IMAGE level) and becomes DONE with what was found, in its
   own transaction. A study whose listing fails for that study (a failure status, an unusable answer)
   becomes FAILED and the crawl goes on; a lost connection is tried once more, then the crawl stops
   (RUNNING, resumable). A resumed crawl tries the FAILED studies again.
3. When no study is PENDING, `produce` turns the DONE ones into the inventory: COMPLETE when every study
   was listed, PARTIAL naming the ones that were not (their instances are in no record, so a consumer
   must not take them as missing).

The archive client is passed in (a `Lister`), so this module speaks no DIMSE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Callable, Iterator, Protocol

from sqlalchemy import Engine, select, update

from workflow.inventory.rules.iod import InstanceFacts, SeriesFacts, StudyFacts
from workflow.inventory.tables import (DONE, FAILED, PENDING, RUNNING, InventoryCrawl as Crawl,
                                       InventoryCrawlStudy as CrawlStudy)
from workflow.reconcile.rules.scope import HoldingsScope
from workflow.store.engine import reading

log = logging.getLogger("workflow.inventory")
C, S = Crawl.__table__, CrawlStudy.__table__
BATCH = 500  # study rows inserted per statement


class Lister(Protocol):
    def studies(self, scope: HoldingsScope) -> Iterator[StudyFacts]:
        """Every study in scope (without series)."""

    def contents(self, study_uid: str) -> tuple[SeriesFacts, ...]:
        """The study's series, each with its instances."""


class CrawlStopped(RuntimeError):
    """The archive stopped answering: the crawl is kept and resumes when the command runs again."""


def scope_key(scope: HoldingsScope) -> str:
    return json.dumps({"since": scope.since.isoformat() if scope.since else None,
                       "modalities": sorted(m.strip().upper() for m in scope.modalities),
                       "study_uids": sorted(scope.study_uids)}, sort_keys=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class CrawlService:
    def __init__(self, engine: Engine, archive_error: type[Exception] = Exception,
                 progress: Callable[[str], None] = lambda message: None) -> None:
        self.engine, self.archive_error, self.progress = engine, archive_error, progress

    def open(self, archive_ae: str, scope: HoldingsScope) -> tuple[int, bool]:
        """The RUNNING crawl of this archive and scope (resumed: True), or a new one."""
        key = scope_key(scope)
        with self.engine.begin() as conn:
            found = conn.execute(select(C.c.id).where(C.c.archive_ae_title == archive_ae, C.c.scope_key == key,
                                                      C.c.status == RUNNING).order_by(C.c.id.desc())).first()
            if found is not None:
                # Resumed: what failed last time is tried again.
                conn.execute(update(S).where(S.c.crawl_id == found.id, S.c.state == FAILED)
                             .values(state=PENDING, detail=""))
                return found.id, True
            crawl_id = conn.execute(C.insert().values(archive_ae_title=archive_ae, scope_key=key, status=RUNNING,
                                                      started_at=_now(), comment="")).inserted_primary_key[0]
            return crawl_id, False

    def crawl(self, crawl_id: int, lister: Lister, scope: HoldingsScope) -> dict[str, int]:
        """Steps 1 and 2; returns the study counts by state. Raises CrawlStopped."""
        with reading(self.engine) as conn:
            listed = conn.execute(select(C.c.listed_at).where(C.c.id == crawl_id)).scalar_one()
        if listed is None:
            self._list_studies(crawl_id, lister, scope)
        pending = self._uids(crawl_id, PENDING)
        self.progress(f"{len(pending)} studies to list")
        for n, study_uid in enumerate(pending, start=1):
            self._list_study(crawl_id, lister, study_uid)
            if n % 50 == 0:
                self.progress(f"{n}/{len(pending)} studies listed")
        return self.counts(crawl_id)

    def _list_studies(self, crawl_id: int, lister: Lister, scope: HoldingsScope) -> None:
        known = set(self._uids(crawl_id, None))
        batch: list[dict] = []
        try:
            for study in lister.studies(scope):
                if study.study_instance_uid in known:
                    continue
                known.add(study.study_instance_uid)
                batch.append({"crawl_id": crawl_id, "study_instance_uid": study.study_instance_uid,
                              "state": PENDING, "study_json": json.dumps(asdict(study)), "detail": ""})
                if len(batch) >= BATCH:
                    self._insert(batch)
                    batch = []
        except self.archive_error as exc:
            self._insert(batch)
            raise CrawlStopped(f"the study list broke off: {exc}") from exc
        self._insert(batch)
        with self.engine.begin() as conn:
            conn.execute(update(C).where(C.c.id == crawl_id).values(listed_at=_now()))
        self.progress(f"{len(known)} studies in scope")

    def _insert(self, rows: list[dict]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(S.insert(), rows)

    def _list_study(self, crawl_id: int, lister: Lister, study_uid: str) -> None:
        for attempt in (1, 2):
            try:
                series = lister.contents(study_uid)
                break
            except self.archive_error as exc:
                if getattr(exc, "connection", False):
                    if attempt == 1:
                        continue  # the client associates again
                    raise CrawlStopped(f"{exc} (while listing study {study_uid})") from exc
                self._set(crawl_id, study_uid, FAILED, None, str(exc)[:500])
                log.warning(f"study {study_uid} could not be listed: {exc}")
                return
        listed = {"listed_at": _now().isoformat(), "series": [asdict(s) for s in series]}
        self._set(crawl_id, study_uid, DONE, json.dumps(listed), "")

    def _set(self, crawl_id: int, study_uid: str, state: str, record: str | None, detail: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(S).where(S.c.crawl_id == crawl_id, S.c.study_instance_uid == study_uid)
                         .values(state=state, record_json=record, detail=detail))

    def _uids(self, crawl_id: int, state: str | None) -> list[str]:
        query = select(S.c.study_instance_uid).where(S.c.crawl_id == crawl_id)
        if state is not None:
            query = query.where(S.c.state == state)
        with reading(self.engine) as conn:
            return list(conn.execute(query.order_by(S.c.study_instance_uid)).scalars())

    def counts(self, crawl_id: int) -> dict[str, int]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(S.c.state, S.c.study_instance_uid).where(S.c.crawl_id == crawl_id)).all()
        out = {PENDING: 0, DONE: 0, FAILED: 0}
        for state, _ in rows:
            out[state] = out.get(state, 0) + 1
        return out


def listed_studies(conn, crawl_id: int) -> Iterator[tuple[StudyFacts, datetime]]:
    """The DONE studies of a crawl in Study Instance UID order (code points, whatever the database's
    collation: UID columns are COLLATE "C" on PostgreSQL), with when each was listed."""
    rows = conn.execute(select(S.c.study_json, S.c.record_json).where(S.c.crawl_id == crawl_id, S.c.state == DONE)
                        .order_by(S.c.study_instance_uid))
    for study_json, record_json in rows:
        listed = json.loads(record_json)
        series = tuple(SeriesFacts(s["series_instance_uid"], s["modality"], s["series_number"],
                                   tuple(InstanceFacts(**i) for i in s["instances"])) for s in listed["series"])
        facts = {k: v for k, v in json.loads(study_json).items() if k != "series"}
        yield StudyFacts(**facts, series=series), datetime.fromisoformat(listed["listed_at"])


def failed_studies(conn, crawl_id: int) -> list[tuple[str, str]]:
    return [tuple(r) for r in conn.execute(select(S.c.study_instance_uid, S.c.detail)
                                           .where(S.c.crawl_id == crawl_id, S.c.state == FAILED)
                                           .order_by(S.c.study_instance_uid))]
