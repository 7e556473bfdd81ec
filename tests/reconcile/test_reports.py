"""Reconciliation reports on both backends: recorded with a SHA-256 when the run ends, rendered as
JSON, CSV and HTML, and verified against the rows (a tampered finding or count fails)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, text

from workflow.reconcile.rules.holdings import Holding
from workflow.reconcile.rules.compare import Comparer, Discrepancy, Expected, Reason, Tally, Unreadable
from workflow.reconcile import reports
from workflow.reconcile.tables import COMPLETED, FAILED, ReconciliationRun

HOSTILE = 'bad </td><script>alert("x")</script> & <img src=x onerror=alert(1)> "quoted", comma\r\nnewline ü'
T0 = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone.utc)


_archives = iter(range(1_000_000))


def new_run(engine, findings, tally=None, *, status=COMPLETED, archive=None, error=None):
    archive = archive or f"ARCH{next(_archives)}"
    with engine.begin() as conn:
        run_id, run_uid = reports.start_run(
            conn, archive_ae_title=archive, archive_host="archive.example", archive_port=11112, method="query",
            scope={"studies_since": "2026-01-01", "modalities": ["CT", "MR"]}, cutoff=T0, started_at=T0)
        reports.record_findings(conn, run_id, findings)
        if tally is None:
            tally = Tally()
            for f in findings:
                tally.count(f)
        reports.finish_run(conn, run_id, tally, status=status, error=error, ended_at=T0 + timedelta(minutes=5))
    return run_id, run_uid


def sample_findings() -> tuple[list[Discrepancy], Tally]:
    comparer = Comparer()
    expected = [Expected(Holding("1.2.1", "1.2.1.1", f"1.2.1.1.{i}", availability="ONLINE", retrieve_ae="ARCH"))
                for i in range(1, 5)]
    actual = [Holding("1.2.1", "1.2.1.1", "1.2.1.1.2", availability="NEARLINE", retrieve_ae="ARCH"),
              Holding("1.2.1", "1.2.1.1", "1.2.1.1.3", availability="ONLINE", retrieve_ae="OTHER"),
              Holding("1.2.1", "1.2.1.1", "1.2.1.1.4", availability="ONLINE", retrieve_ae="ARCH"),
              Holding("1.2.1", "1.2.1.1", "1.2.1.1.5")]
    found = list(comparer.compare_study("1.2.1", expected, actual))
    found += comparer.compare_study("1.2.2", [Expected(Holding("1.2.2", "1", "1"))], Unreadable(HOSTILE))
    return found, comparer.tally


def test_start_finish_and_verify(engine):
    findings, tally = sample_findings()
    run_id, run_uid = new_run(engine, findings, tally)
    assert run_uid.startswith("2.25.") and len(run_uid) <= 64
    with engine.connect() as conn:
        run = conn.execute(select(ReconciliationRun).where(ReconciliationRun.id == run_id)).one()
    assert run.status == COMPLETED and run.ended_at == T0 + timedelta(minutes=5)
    assert hashlib.sha256(run.report_json.encode()).hexdigest() == run.report_sha256
    doc = json.loads(run.report_json)
    assert doc["run_uid"] == run_uid and doc["archive"]["ae_title"].startswith("ARCH")
    assert doc["cutoff"] == "2026-11-23T10:00:00.123456Z"
    assert doc["counts"]["by_reason"] == {"MISSING_IN_ARCHIVE": 1, "UNEXPECTED_IN_ARCHIVE": 1,
                                          "AVAILABILITY_MISMATCH": 1, "LOCATION_MISMATCH": 1,
                                          "COUNT_MISMATCH": 0, "ARCHIVE_ERROR": 1}
    assert doc["counts"]["totals"]["matched"] == 1
    assert [d["seq"] for d in doc["discrepancies"]] == [1, 2, 3, 4, 5]
    assert doc["discrepancies"][-1]["actual"] == HOSTILE
    # Canonical: what json.dumps gives for the same data, sorted keys and no whitespace.
    assert run.report_json == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    ok, recorded, computed = reports.verify(engine, run_id)
    assert ok and recorded == computed == run.report_sha256


def test_tampered_finding_fails_verification(engine):
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    assert reports.verify(engine, run_id).ok
    with engine.begin() as conn:
        conn.execute(text("UPDATE discrepancy SET detail = 'nothing to see' WHERE run_id = :r AND seq = 2"),
                     {"r": run_id})
    check = reports.verify(engine, run_id)
    assert not check.ok and check.recorded != check.computed
    assert "changed" in check.problems[0]


def test_tampered_counts_fail_verification(engine):
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    with engine.begin() as conn:
        counts = json.loads(conn.execute(text("SELECT counts FROM reconciliation_run WHERE id = :r"),
                                         {"r": run_id}).scalar_one())
        counts["totals"]["matched"] += 1000
        conn.execute(text("UPDATE reconciliation_run SET counts = :c WHERE id = :r"),
                     {"c": json.dumps(counts), "r": run_id})
    ok, recorded, computed = reports.verify(engine, run_id)
    assert not ok and recorded != computed


def test_deleted_finding_fails_verification(engine):
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM discrepancy WHERE run_id = :r AND seq = 1"), {"r": run_id})
    check = reports.verify(engine, run_id)
    assert not check.ok and any("counts" in p for p in check.problems)


def test_render_json_is_the_recorded_report(engine):
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    out = io.BytesIO()
    digest = reports.render_json(engine, run_id, out)
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT report_json FROM reconciliation_run WHERE id = :r"),
                                {"r": run_id}).scalar_one()
    assert out.getvalue() == recorded.encode("utf-8")
    assert digest == hashlib.sha256(out.getvalue()).hexdigest()


def test_render_csv_parses_back(engine):
    findings, tally = sample_findings()
    run_id, run_uid = new_run(engine, findings, tally)
    out = io.StringIO(newline="")
    assert reports.render_csv(engine, run_id, out) == len(findings)
    raw = out.getvalue()
    assert raw.startswith("run_uid,seq,reason,") and raw.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    assert rows[0] == list(reports.CSV_HEADER)
    assert len(rows) == 1 + len(findings)
    for row, f in zip(rows[1:], findings):
        record = dict(zip(rows[0], row))
        assert record["run_uid"] == run_uid
        assert record["reason"] == f.reason.value and record["sop_instance_uid"] == (f.sop_uid or "")
        assert record["detail"] == f.detail
    assert rows[-1][-1] == HOSTILE  # commas, quotes and CRLF inside a field survive


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def test_render_html_escapes_and_is_self_contained(engine):
    findings, tally = sample_findings()
    findings.append(Discrepancy(Reason.COUNT_MISMATCH, "1.2.3", None, None, HOSTILE, expected="<1>", actual="&2"))
    tally.count(findings[-1])
    run_id, run_uid = new_run(engine, findings, tally)
    out = io.StringIO()
    reports.render_html(engine, run_id, out)
    page = out.getvalue()
    assert "<script" not in page.lower() and "onerror=alert" not in page.replace("&lt;img src=x onerror=alert", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parsed = _Collect()
    parsed.feed(page)
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "table", "tr", "th",
                                "td", "code", "span", "p"}
    assert not any(name in ("src", "href") for name, _ in parsed.attrs)
    body = "".join(parsed.text)
    assert HOSTILE.replace("\r\n", "\n") in body.replace("\r\n", "\n")  # escaped, so shown as written
    with engine.connect() as conn:
        sha = conn.execute(text("SELECT report_sha256 FROM reconciliation_run WHERE id = :r"), {"r": run_id}).scalar_one()
    for needle in (run_uid, sha, "query", "2026-11-23T10:00:00.123456Z", "archive.example:11112", "studies_since",
                   "match the recorded report", "1.2.1", "LOCATION_MISMATCH"):
        assert needle in body, needle
    # The per-study table: study 1.2.1 has one finding of each of four reasons.
    assert "1.2.1" in body and body.count("1.2.3") >= 2


def test_html_shows_a_failed_verification(engine):
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    with engine.begin() as conn:
        conn.execute(text("UPDATE discrepancy SET reason = 'COUNT_MISMATCH' WHERE run_id = :r AND seq = 1"),
                     {"r": run_id})
    out = io.StringIO()
    reports.render_html(engine, run_id, out, max_findings=2)
    assert 'class="bad"' in out.getvalue() and "3 more findings are not shown" in out.getvalue()


def test_one_running_run_per_archive(engine):
    with engine.begin() as conn:
        reports.start_run(conn, archive_ae_title="BUSY", archive_host="h", archive_port=104, method="inventory",
                          scope={}, cutoff=T0)
    with pytest.raises(reports.RunInProgress):
        with engine.begin() as conn:
            reports.start_run(conn, archive_ae_title="BUSY", archive_host="h", archive_port=104,
                              method="inventory", scope={}, cutoff=T0)
    # Once it has ended, the next one may start.
    with engine.begin() as conn:
        run_id = conn.execute(text("SELECT id FROM reconciliation_run WHERE archive_ae_title = 'BUSY'")).scalar_one()
        reports.finish_run(conn, run_id, Tally(), status=FAILED, error="archive refused the association")
    with engine.begin() as conn:
        reports.start_run(conn, archive_ae_title="BUSY", archive_host="h", archive_port=104, method="inventory",
                          scope={}, cutoff=T0)
    assert reports.verify(engine, run_id).ok


def test_finish_refuses_counts_that_disagree_with_the_rows(engine):
    findings, _ = sample_findings()
    with pytest.raises(ValueError, match="disagree"):
        new_run(engine, findings, Tally())  # the tally saw none of the recorded findings


def test_large_report_keeps_only_the_hash(engine, monkeypatch):
    monkeypatch.setattr(reports, "RECORD_LIMIT", 200)
    findings, tally = sample_findings()
    run_id, _ = new_run(engine, findings, tally)
    with engine.connect() as conn:
        report_json, sha = conn.execute(text("SELECT report_json, report_sha256 FROM reconciliation_run "
                                             "WHERE id = :r"), {"r": run_id}).one()
    assert report_json is None and len(sha) == 64
    assert reports.verify(engine, run_id).ok


def test_many_findings_stream(engine):
    findings = [Discrepancy(Reason.MISSING_IN_ARCHIVE, f"1.9.{i // 100}", "1", f"1.9.{i}", "announced by IAN")
                for i in range(5000)]
    run_id, _ = new_run(engine, findings)
    out = io.StringIO(newline="")
    assert reports.render_csv(engine, run_id, out) == 5000
    assert reports.verify(engine, run_id).ok
