"""A reconciliation run through the query path: what IANs told us an archive holds (expected) against
what the archive answers (actual), findings written as they are found, the run ended with its report hash.

Expected holdings are the instance locations whose Retrieve AE Title is the archive's; those notified
after the run's cut-off are compared with nothing (an IAN arriving during the run causes no false
finding). Both sides are read study by study, in Study Instance UID order: the archive's study list
(Study Root C-FIND at STUDY level) merged with ours, then each study's instances from both sides, so
memory holds one study at a time, never the archive or the expected set.

The archive client is passed in (`holdings`): anything with `studies(scope)` and `instances(study)`
as `dimse.holdings_query.StudyRootHoldings` has, so this module stays free of DIMSE.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, select

from workflow.ian.tables import Instance, InstanceLocation
from workflow.reconcile import reports
from workflow.reconcile.rules.compare import Comparer, Expected, Rules, Tally, Unreadable, pair_studies
from workflow.reconcile.rules.holdings import Holding, StudyCount
from workflow.reconcile.runs import Archive, RunResult, Scope, end_run, record, start_run
from workflow.reconcile.tables import COMPLETED, FAILED
from workflow.store.engine import aware, reading

log = logging.getLogger("workflow.reconcile")
I, L = Instance.__table__, InstanceLocation.__table__
# Consecutive studies the archive fails to answer for before the run is abandoned as FAILED (the
# archive has gone away): what could not be checked is never reported missing.
GIVE_UP_AFTER = 3


class ArchiveGone(RuntimeError):
    pass


class ReconcileService:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.engine = engine
        self.clock = clock

    def run(self, archive: Archive, holdings, scope: Scope = Scope(), rules: Rules = Rules(),
            progress: Callable[[str], None] = lambda message: None, archive_error=Exception,
            method: str = "query") -> RunResult:
        """Reconcile through the query path. `archive_error`: the exception type the client raises
        when the archive could not answer (it carries `.study_uid` when one study was concerned).
        `method`: as recorded, "query" (Study Root C-FIND) or "repository" (Repository Query)."""
        cutoff = self.clock()
        with self.engine.begin() as conn:
            run_id, run_uid = start_run(conn, archive, method, scope, cutoff)
        log.info(f"reconciliation {run_uid} of {archive.ae_title} started ({method}, cut-off {cutoff.isoformat()})")
        comparer = Comparer(rules, Tally())
        status, error = COMPLETED, None
        try:
            record(self.engine, run_id, self._findings(archive, holdings, scope, cutoff, comparer, progress,
                                                       archive_error, run_id))
        except ArchiveGone as exc:
            status, error = FAILED, str(exc)
        except archive_error as exc:  # the study list itself could not be read
            status, error = FAILED, f"the archive could not be read: {exc}"
        return end_run(self.engine, run_id, run_uid, archive, comparer.tally, status, error)

    def failed(self, archive: Archive, method: str, scope: Scope, error: str) -> RunResult:
        """Record a run that could not start (no way to list the archive's holdings): FAILED, on record."""
        cutoff = self.clock()
        with self.engine.begin() as conn:
            run_id, run_uid = start_run(conn, archive, method, scope, cutoff)
            tally = Tally()
            reports.finish_run(conn, run_id, tally, status=FAILED, error=error)
        log.warning(f"reconciliation {run_uid} of {archive.ae_title} FAILED: {error}")
        return RunResult(run_uid, FAILED, tally.as_dict(), error)

    # ------------------------------------------------------------------ the comparison

    def _findings(self, archive: Archive, holdings, scope: Scope, cutoff: datetime, comparer: Comparer,
                  progress, archive_error, run_id: int | None = None) -> Iterator:
        counts: dict[str, StudyCount] = {}

        def archive_studies() -> Iterator[str]:
            # Sorted for the merge; the archive's order is its own. Study-level records only.
            for c in sorted(holdings.studies(scope.holdings_scope()), key=lambda c: c.study_uid):
                counts[c.study_uid] = c
                yield c.study_uid

        failures, done = 0, 0
        for pair in pair_studies(self._expected_studies(archive, scope, cutoff), archive_studies()):
            done += 1
            if done % 100 == 0:
                progress(f"{done} studies compared")
                if run_id is not None:  # a long comparison without findings shows it is alive too
                    with self.engine.begin() as conn:
                        reports.heartbeat(conn, run_id)
            expected = list(self._expected(archive, pair.study_uid, cutoff)) if pair.expected else []
            if not pair.actual and not pair.expected:
                continue
            if (archive.count_shortcut and pair.actual and pair.expected
                    and _counts_agree(counts[pair.study_uid], expected)):
                comparer.tally.matched += len(expected)
                continue
            try:
                actual: Any = sorted(holdings.instances(pair.study_uid), key=lambda h: h.key)
                failures = 0
            except archive_error as exc:
                failures += 1
                if failures >= GIVE_UP_AFTER:
                    raise ArchiveGone(f"the archive stopped answering ({exc}); {done - failures} studies "
                                      f"were compared before") from exc
                actual = Unreadable(str(exc))
            yield from comparer.compare_study(pair.study_uid, expected, actual)

    def _expected_studies(self, archive: Archive, scope: Scope, cutoff: datetime) -> Iterator[str]:
        query = (select(I.c.study_instance_uid).join(L, L.c.instance_id == I.c.id)
                 .where(L.c.retrieve_ae_title == archive.retrieve_ae).distinct())
        if scope.study_uids:
            query = query.where(I.c.study_instance_uid.in_(scope.study_uids))
        if scope.days is not None:
            query = query.where(I.c.first_notified_at >= cutoff - timedelta(days=scope.days))
        if scope.modalities:
            return iter(())  # IANs carry no modality: only the archive's list says which studies
        with reading(self.engine) as conn:
            uids = conn.execute(query).scalars().all()  # UIDs only: one string per study
        return iter(sorted(uids))

    def _expected(self, archive: Archive, study_uid: str, cutoff: datetime) -> Iterator[Expected]:
        with reading(self.engine) as conn:
            rows = conn.execute(
                select(I.c.series_instance_uid, I.c.sop_instance_uid, I.c.sop_class_uid, L.c.availability,
                       L.c.retrieve_url, L.c.notified_at, I.c.first_notified_at)
                .join(L, L.c.instance_id == I.c.id)
                .where(I.c.study_instance_uid == study_uid, L.c.retrieve_ae_title == archive.retrieve_ae)).all()
        for r in sorted(rows, key=lambda r: (r.series_instance_uid, r.sop_instance_uid)):
            settled = aware(r.notified_at) <= cutoff
            yield Expected(Holding(study_uid, r.series_instance_uid, r.sop_instance_uid, r.sop_class_uid,
                                   r.availability, archive.retrieve_ae, r.retrieve_url or ""), settled)


def _counts_agree(count: StudyCount, expected: list[Expected]) -> bool:
    return (count.instance_count is not None and all(e.settled for e in expected)
            and count.instance_count == len(expected))
