"""What both ways of reconciling share: the archive asked (`Archive`), which studies (`Scope`), and a
run begun, its findings written in batches and the run ended with its result (`RunResult`).
The paths (`query_path`, `inventory_path`) are handed their archive clients, so none of this speaks
DIMSE."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, Engine

from workflow.reconcile import reports
from workflow.reconcile.rules.compare import Discrepancy, Tally
from workflow.reconcile.rules.scope import HoldingsScope

log = logging.getLogger("workflow.reconcile")
FINDINGS_PER_TRANSACTION = 1000


@dataclass(frozen=True)
class Scope:
    """Which studies a run covers: all (the default), those of the last `days` days (Study Date at the
    archive; for our side, first notified in that window), `modalities` (at the archive), or `study_uids`."""

    days: int | None = None
    modalities: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def holdings_scope(self) -> HoldingsScope:
        """The scope as the archive clients take it: `days` as a Study Date from today on."""
        since = date.today() - timedelta(days=self.days) if self.days is not None else None
        return HoldingsScope(since=since, modalities=tuple(self.modalities), study_uids=tuple(self.study_uids))


@dataclass
class Archive:
    ae_title: str
    host: str
    port: int
    # The Retrieve AE Title IANs name for this archive's holdings (usually its own AE title).
    retrieve_ae_title: str = ""
    count_shortcut: bool = False  # skip the IMAGE level query of a study whose counts agree

    @property
    def retrieve_ae(self) -> str:
        return self.retrieve_ae_title or self.ae_title


@dataclass
class RunResult:
    run_uid: str
    status: str
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def start_run(conn: Connection, archive: Archive, method: str, scope: Scope, cutoff: datetime) -> tuple[int, str]:
    """A RUNNING run of `archive` recorded in the caller's transaction: (id, run UID)."""
    return reports.start_run(conn, archive_ae_title=archive.ae_title, archive_host=archive.host,
                             archive_port=archive.port, method=method, scope=scope.as_dict(), cutoff=cutoff)


def record(engine: Engine, run_id: int, findings: Iterable[Discrepancy]) -> None:
    """Write the findings as they come, FINDINGS_PER_TRANSACTION per transaction, numbered in order."""
    seq = 1
    for batch in batches(findings, FINDINGS_PER_TRANSACTION):
        with engine.begin() as conn:
            seq = reports.record_findings(conn, run_id, batch, start_seq=seq)


def end_run(engine: Engine, run_id: int, run_uid: str, archive: Archive, tally: Tally, status: str,
            error: str | None, source: str | None = None) -> RunResult:
    """Record the run's end (status, counts, report hash) and log it; `source`: what the holdings came from."""
    with engine.begin() as conn:
        reports.finish_run(conn, run_id, tally, status=status, error=error)
    counts = tally.as_dict()
    log.info(f"reconciliation {run_uid} of {archive.ae_title} {status}: {counts['by_reason']}"
             + (f" ({error})" if error else f" from {source}" if source else ""))
    return RunResult(run_uid, status, counts, error)


def batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
