"""A reconciliation run's report: recorded once, tamper-evident, rendered for people and tools.

The canonical JSON of a run (sorted keys, no whitespace, UTF-8, findings ordered by seq) is hashed
with SHA-256 when the run ends, in the transaction that sets its status (`finish_run`). `verify`
recomputes it from the rows as they are now: a changed finding or changed counts no longer match.
Keep the printed SHA-256 somewhere else too (a ticket, an e-mail): whoever can rewrite the rows can
also rewrite the recorded hash.

Sizes: every reader streams findings in batches of `BATCH` rows (JSON, CSV and HTML are written to a
stream as they go), so memory does not grow with the number of findings; a few million rows per run
is the design point. The run row keeps a copy of the canonical JSON only up to `RECORD_LIMIT` bytes
(about 200,000 findings); beyond it only the hash is recorded, which verifies just the same.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, TextIO

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workflow import __version__
from workflow.reconcile.rules.compare import MEANING, TOTALS, Discrepancy, Reason, Tally
from workflow.store.engine import reading
from workflow.reconcile.tables import (COMPLETED, FAILED, RUNNING, DiscrepancyRow, ReconciliationRun,
                                             new_run_uid)

FORMAT = "wfm-reconciliation-report/1"
BATCH = 1000
RECORD_LIMIT = 64 * 2**20

_RUN = ReconciliationRun.__table__
_FINDING = DiscrepancyRow.__table__
FINDING_FIELDS = ("seq", "reason", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "detail",
                  "expected", "actual")

Db = Connection | Session


class RunInProgress(RuntimeError):
    """Another run for the same archive AE title is RUNNING."""


class RunEnded(RuntimeError):
    """The run is no longer RUNNING: it was ended elsewhere (abandoned by stale run recovery, or
    interrupted by a shutdown), so nothing more is recorded for it and its recorded report stands."""


# --- recording a run -----------------------------------------------------------------------------------

def start_run(conn: Db, *, archive_ae_title: str, archive_host: str, archive_port: int, method: str,
              scope: Mapping[str, Any], cutoff: datetime, started_at: datetime | None = None,
              software_version: str = __version__) -> tuple[int, str]:
    """Insert a RUNNING run; (id, run_uid). The partial unique index refuses a second RUNNING run for
    the same AE title (raised as RunInProgress; the caller's transaction is then unusable)."""
    run_uid = new_run_uid()
    started_at = started_at or datetime.now(timezone.utc)
    try:
        run_id = conn.execute(insert(_RUN).values(
            run_uid=run_uid, archive_ae_title=archive_ae_title, archive_host=archive_host,
            archive_port=archive_port, method=method, scope=_dumps(dict(scope)), cutoff=cutoff,
            started_at=started_at, heartbeat_at=started_at, status=RUNNING,
            counts=_dumps(normalize_counts({})), software_version=software_version,
        ).returning(_RUN.c.id)).scalar_one()
    except IntegrityError as exc:
        raise RunInProgress(f"a reconciliation of {archive_ae_title} is already running") from exc
    return run_id, run_uid


def set_source(conn: Db, run_id: int, cutoff: datetime, source: Mapping[str, Any]) -> None:
    """Once the archive's holdings are in hand: the run's cut-off (an inventory taken before the run
    started moves it back) and what the holdings came from (kept in the scope, under "source")."""
    scope = json.loads(conn.execute(select(_RUN.c.scope).where(_RUN.c.id == run_id)).scalar_one())
    scope["source"] = dict(source)
    conn.execute(update(_RUN).where(_RUN.c.id == run_id, _RUN.c.status == RUNNING)
                 .values(cutoff=cutoff, scope=_dumps(scope), heartbeat_at=datetime.now(timezone.utc)))


def record_findings(conn: Db, run_id: int, findings: Iterable[Discrepancy], *, start_seq: int = 1) -> int:
    """Insert findings numbered from start_seq, BATCH rows per statement; returns the next seq. Also
    a heartbeat: raises RunEnded (and nothing is inserted, once the caller's transaction rolls back)
    when the run was ended elsewhere."""
    heartbeat(conn, run_id)  # first: on PostgreSQL it locks the run row against a concurrent abandon
    seq = start_seq
    rows: list[dict] = []
    for d in findings:
        rows.append({"run_id": run_id, "seq": seq, "reason": str(d.reason), "study_instance_uid": d.study_uid,
                     "series_instance_uid": d.series_uid, "sop_instance_uid": d.sop_uid, "detail": d.detail,
                     "expected": d.expected, "actual": d.actual})
        seq += 1
        if len(rows) >= BATCH:
            conn.execute(insert(_FINDING), rows)
            rows = []
    if rows:
        conn.execute(insert(_FINDING), rows)
    return seq


def finish_run(conn: Db, run: int | Any, counts: Tally | Mapping[str, Any], *, status: str = COMPLETED,
               error: str | None = None, ended_at: datetime | None = None) -> str:
    """End a run inside the caller's transaction: status, ended_at, error and counts, then the canonical
    JSON of the run as now stored and its SHA-256 (returned). The counts by reason are those of the
    recorded rows; a COMPLETED run whose tally disagrees with them is refused (findings were lost)."""
    if status not in (COMPLETED, FAILED):
        raise ValueError(f"a run finishes COMPLETED or FAILED, not {status}")
    run_id = run if isinstance(run, int) else run.id
    given = normalize_counts(counts.as_dict() if isinstance(counts, Tally) else counts)
    stored = _reasons_in_rows(conn, run_id)
    if status == COMPLETED and given["by_reason"] != stored:
        raise ValueError(f"counts by reason {given['by_reason']} disagree with the recorded findings {stored}")
    given["by_reason"] = stored
    ended = conn.execute(update(_RUN).where(_RUN.c.id == run_id, _RUN.c.status == RUNNING).values(
        status=status, error=error, ended_at=ended_at or datetime.now(timezone.utc), counts=_dumps(given)))
    if ended.rowcount == 0:  # ended once already: its recorded report must not be rewritten
        raise RunEnded(f"reconciliation run {run_id} is no longer running")
    return _record_report(conn, run_id)


def heartbeat(conn: Db, run_id: int, at: datetime | None = None) -> None:
    """A sign of life of a RUNNING run (the service calls it every 100 studies, and with each batch
    of findings). Raises RunEnded when the run was ended elsewhere: the caller must stop."""
    alive = conn.execute(update(_RUN).where(_RUN.c.id == run_id, _RUN.c.status == RUNNING)
                         .values(heartbeat_at=at or datetime.now(timezone.utc)))
    if alive.rowcount == 0:
        raise RunEnded(f"reconciliation run {run_id} is no longer running (ended elsewhere)")


def abandon_stale(conn: Db, stale_before: datetime, *, now: datetime | None = None) -> list[tuple[str, str]]:
    """End every RUNNING run with no heartbeat since `stale_before` (its process died, or hangs) as
    FAILED "abandoned: no progress since ...": counts by reason as recorded so far, the report and its
    SHA-256 recorded, so `wfm report verify` works on it. Returns (run UID, archive AE title) of each."""
    last = func.coalesce(_RUN.c.heartbeat_at, _RUN.c.started_at)
    stale = (_RUN.c.status == RUNNING) & (last < stale_before)
    ended = []
    for run in conn.execute(select(_RUN.c.id, _RUN.c.run_uid, _RUN.c.archive_ae_title, _RUN.c.counts,
                                   last.label("last"))
                            .where(stale).order_by(_RUN.c.id)).all():
        counts = normalize_counts(json.loads(run.counts))
        counts["by_reason"] = _reasons_in_rows(conn, run.id)
        # The staleness is checked again in the UPDATE itself: a run that beat meanwhile is left alone.
        done = conn.execute(update(_RUN).where(_RUN.c.id == run.id, stale).values(
            status=FAILED, error=f"abandoned: no progress since {_iso(run.last)}",
            ended_at=now or datetime.now(timezone.utc), counts=_dumps(counts)))
        if done.rowcount:
            _record_report(conn, run.id)
            ended.append((run.run_uid, run.archive_ae_title))
    return ended


def _record_report(conn: Db, run_id: int) -> str:
    """The canonical JSON of the run as now stored, and its SHA-256 (returned), on the run row."""
    row = _run(conn, run_id)
    digest, recorded = _digest(canonical_chunks(row, _findings(conn, run_id)), keep=RECORD_LIMIT)
    conn.execute(update(_RUN).where(_RUN.c.id == run_id).values(
        report_sha256=digest, report_json=None if recorded is None else recorded.decode("utf-8")))
    return digest


# --- the canonical JSON ----------------------------------------------------------------------------------

def normalize_counts(counts: Mapping[str, Any]) -> dict[str, Any]:
    """{"by_reason": every code (0 when absent), "totals": every total (0 when absent)}."""
    by_reason = dict(counts.get("by_reason", {}))
    totals = dict(counts.get("totals", {}))
    return {"by_reason": {**{r.value: 0 for r in Reason}, **by_reason},
            "totals": {**{t: 0 for t in TOTALS}, **totals}}


def canonical_chunks(run: Any, findings: Iterable[Any]) -> Iterator[bytes]:
    """The canonical JSON in pieces, equal to json.dumps(whole, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False) in UTF-8; `findings` must come ordered by seq."""
    head = _run_document(run)
    # Written by hand only around the list, so the findings never sit in memory together.
    before = {k: v for k, v in head.items() if k < "discrepancies"}
    after = {k: v for k, v in head.items() if k > "discrepancies"}
    yield (_dumps(before)[:-1] + ("," if before else "") + '"discrepancies":[').encode("utf-8")
    first = True
    for f in findings:
        yield (("" if first else ",") + _dumps(_finding_document(f))).encode("utf-8")
        first = False
    yield ("]" + ("," + _dumps(after)[1:] if after else "}")).encode("utf-8")


def canonical_json(run: Any, findings: Iterable[Any]) -> bytes:
    return b"".join(canonical_chunks(run, findings))


def sha256(run: Any, findings: Iterable[Any]) -> str:
    return _digest(canonical_chunks(run, findings))[0]


def _run_document(run: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "run_uid": run.run_uid,
        "status": run.status,
        "error": run.error,
        "archive": {"ae_title": run.archive_ae_title, "host": run.archive_host, "port": run.archive_port},
        "method": run.method,
        "scope": json.loads(run.scope),
        "cutoff": _iso(run.cutoff),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "software_version": run.software_version,
        "counts": normalize_counts(json.loads(run.counts)),
    }


def _finding_document(f: Any) -> dict[str, Any]:
    return {name: getattr(f, name) for name in FINDING_FIELDS}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.utcoffset() is None:  # a naive value from the store is UTC
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(chunks: Iterable[bytes], keep: int = 0) -> tuple[str, bytes | None]:
    """SHA-256 of the chunks, and the bytes themselves while they stay within `keep`."""
    h = hashlib.sha256()
    kept: list[bytes] | None = [] if keep else None
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        if kept is not None:
            if size > keep:
                kept = None
            else:
                kept.append(chunk)
    return h.hexdigest(), None if kept is None else b"".join(kept)


# --- reading the store -------------------------------------------------------------------------------

def _run(conn: Db, run_id: int):
    row = conn.execute(select(*_RUN.c).where(_RUN.c.id == run_id)).one_or_none()
    if row is None:
        raise LookupError(f"no reconciliation run {run_id}")
    return row


def _findings(conn: Db, run_id: int) -> Iterator[Any]:
    # Streamed (a server-side cursor on PostgreSQL), ordered by the (run_id, seq) index.
    result = conn.execute(select(*_FINDING.c).where(_FINDING.c.run_id == run_id).order_by(_FINDING.c.seq),
                          execution_options={"yield_per": BATCH})
    try:
        yield from result
    finally:
        result.close()


def _reasons_in_rows(conn: Db, run_id: int) -> dict[str, int]:
    rows = conn.execute(select(_FINDING.c.reason, func.count()).where(_FINDING.c.run_id == run_id)
                        .group_by(_FINDING.c.reason)).all()
    return {**{r.value: 0 for r in Reason}, **{reason: n for reason, n in rows}}


def _by_study(conn: Db, run_id: int) -> Iterator[tuple[str, dict[str, int]]]:
    """(study UID, findings by reason) in study order, one study at a time."""
    result = conn.execute(
        select(_FINDING.c.study_instance_uid, _FINDING.c.reason, func.count())
        .where(_FINDING.c.run_id == run_id)
        .group_by(_FINDING.c.study_instance_uid, _FINDING.c.reason)
        .order_by(_FINDING.c.study_instance_uid, _FINDING.c.reason),
        execution_options={"yield_per": BATCH})
    study, counts = None, {}
    for uid, reason, n in result:
        if uid != study and study is not None:
            yield study, counts
            counts = {}
        study = uid
        counts[reason] = n
    if study is not None:
        yield study, counts


# --- reading runs ------------------------------------------------------------------------------------------

def run_id(engine: Engine, run_uid: str) -> int | None:
    """The row id of a run by its UID; None for an unknown run."""
    with reading(engine) as conn:
        return conn.execute(select(ReconciliationRun.id).where(ReconciliationRun.run_uid == run_uid)).scalar()


def list_runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The runs, most recent first: archive, method, status, times, counts by reason, findings."""
    R = ReconciliationRun
    with reading(engine) as conn:
        rows = conn.execute(select(R.run_uid, R.archive_ae_title, R.method, R.status, R.started_at, R.ended_at,
                                   R.counts).order_by(R.started_at.desc()).limit(limit)).all()
    out = []
    for r in rows:
        by_reason = {k: v for k, v in json.loads(r.counts or "{}").get("by_reason", {}).items() if v}
        out.append({"run_uid": r.run_uid, "archive": r.archive_ae_title, "method": r.method, "status": r.status,
                    "started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at),
                    "findings": sum(by_reason.values()), "by_reason": by_reason})
    return out


# --- verification ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    ok: bool
    recorded: str | None
    computed: str
    problems: tuple[str, ...] = ()

    def __iter__(self):  # unpacks as (ok, recorded, computed)
        return iter((self.ok, self.recorded, self.computed))


def verify(engine: Engine, run_id: int) -> Verification:
    """Recompute the run's canonical JSON from the rows now stored and compare with what was recorded
    (the hash, the JSON copy when kept, and the counts by reason against the rows)."""
    with reading(engine) as conn:
        run = _run(conn, run_id)
        computed, _ = _digest(canonical_chunks(run, _findings(conn, run_id)))
        in_rows = _reasons_in_rows(conn, run_id)
    problems = []
    if run.report_sha256 is None:
        problems.append("no report was recorded (the run has not finished)")
    elif computed != run.report_sha256:
        problems.append("the run or its findings changed since the report was recorded")
    if run.report_json is not None and hashlib.sha256(run.report_json.encode("utf-8")).hexdigest() != run.report_sha256:
        problems.append("the recorded JSON does not match the recorded SHA-256")
    if normalize_counts(json.loads(run.counts))["by_reason"] != in_rows:
        problems.append("the counts by reason disagree with the findings stored")
    return Verification(not problems, run.report_sha256, computed, tuple(problems))


# --- rendering ---------------------------------------------------------------------------------------------

def render_json(engine: Engine, run_id: int, out: BinaryIO) -> str:
    """Write the canonical JSON (from the rows now stored) to a binary stream; returns its SHA-256."""
    h = hashlib.sha256()
    with reading(engine) as conn:
        for chunk in canonical_chunks(_run(conn, run_id), _findings(conn, run_id)):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


CSV_HEADER = ("run_uid",) + FINDING_FIELDS


def render_csv(engine: Engine, run_id: int, out: TextIO) -> int:
    """RFC 4180 CSV (CRLF line ends, quotes only where needed) to a text stream opened with
    newline=""; a header row, then one row per finding in seq order; empty for None. Returns rows."""
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_HEADER)
    n = 0
    with reading(engine) as conn:
        run_uid = _run(conn, run_id).run_uid
        for f in _findings(conn, run_id):
            writer.writerow([run_uid] + ["" if getattr(f, k) is None else getattr(f, k) for k in FINDING_FIELDS])
            n += 1
    return n


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee}td.n{text-align:right}
code,.uid{font-family:ui-monospace,monospace;font-size:.92em;word-break:break-all}
.ok{color:#075}.bad{color:#a00;font-weight:bold}
"""


_CELL_CLASS = {"seq": ' class="n"', "study_instance_uid": ' class="uid"', "series_instance_uid": ' class="uid"',
               "sop_instance_uid": ' class="uid"'}


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def render_html(engine: Engine, run_id: int, out: TextIO, *, max_findings: int | None = None) -> None:
    """A self-contained page (inline CSS; no script, no external resource; a CSP forbids both):
    summary, counts by class, findings per study, then the findings (all of them unless
    max_findings is given). Every value is HTML-escaped."""
    check = verify(engine, run_id)
    w = out.write
    with reading(engine) as conn:
        run = _run(conn, run_id)
        counts = normalize_counts(json.loads(run.counts))
        w('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
          f"<title>Reconciliation {_e(run.run_uid)}</title><style>{_CSS}</style></head><body>\n")
        w(f"<h1>Reconciliation of {_e(run.archive_ae_title)}: {_e(run.status)}</h1>\n")
        summary = [
            ("Run UID", run.run_uid), ("Status", run.status), ("Error", run.error),
            ("Archive", f"{run.archive_ae_title} at {run.archive_host}:{run.archive_port}"),
            ("Method", run.method), ("Scope", _dumps(json.loads(run.scope))), ("Cut-off", _iso(run.cutoff)),
            ("Started", _iso(run.started_at)), ("Ended", _iso(run.ended_at)),
            ("Software version", run.software_version), ("Report SHA-256", run.report_sha256),
        ]
        w("<table>" + "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                              for k, v in summary if v is not None or k in ("Report SHA-256", "Ended")))
        verdict = ('<span class="ok">the stored findings match the recorded report</span>' if check.ok else
                   '<span class="bad">' + _e("; ".join(check.problems)) + "</span>")
        w(f"<tr><th>Verification</th><td>{verdict}</td></tr></table>\n")

        w("<h2>Findings by class</h2>\n<table><tr><th>Reason</th><th>Count</th><th>Meaning</th></tr>")
        for reason in Reason:
            w(f'<tr><td><code>{_e(reason.value)}</code></td><td class="n">{_e(counts["by_reason"].get(reason.value, 0))}'
              f"</td><td>{_e(MEANING[reason])}</td></tr>")
        w("</table>\n<table><tr><th>Total</th><th>Count</th></tr>")
        for name, n in sorted(counts["totals"].items()):
            w(f'<tr><td>{_e(name)}</td><td class="n">{_e(n)}</td></tr>')
        w("</table>\n")

        w("<h2>Findings by study</h2>\n<table><tr><th>Study Instance UID</th>"
          + "".join(f"<th>{_e(r.value)}</th>" for r in Reason) + "</tr>")
        for study, by_reason in _by_study(conn, run_id):
            w(f'<tr><td class="uid">{_e(study)}</td>'
              + "".join(f'<td class="n">{_e(by_reason.get(r.value, 0))}</td>' for r in Reason) + "</tr>\n")
        w("</table>\n")

        w("<h2>Findings</h2>\n<table><tr>" + "".join(f"<th>{_e(k)}</th>" for k in FINDING_FIELDS) + "</tr>\n")
        shown = 0
        for f in _findings(conn, run_id):
            if max_findings is not None and shown >= max_findings:
                break
            w("<tr>" + "".join(f"<td{_CELL_CLASS.get(k, '')}>{_e(getattr(f, k))}</td>" for k in FINDING_FIELDS)
              + "</tr>\n")
            shown += 1
        w("</table>\n")
        total = sum(counts["by_reason"].values())
        if shown < total:
            w(f"<p>{_e(total - shown)} more findings are not shown here; the CSV and JSON reports list all.</p>\n")
        w("</body></html>\n")
