"""The checked-in conformance statement is exactly what the code generates."""

from __future__ import annotations

from pathlib import Path

from workflow.conformance import render
from workflow.ups.worklist import STATUS_CONDITIONS as UPS_STATUS_CONDITIONS
from workflow.mpps.rules.procedure_step import STATUS_CONDITIONS as MPPS_STATUS_CONDITIONS
from workflow.ian.ingest import STATUS_CONDITIONS
from workflow.ian.rules.availability import Availability

CHECKED_IN = Path(__file__).resolve().parents[2] / "conformance" / "CONFORMANCE.md"


def test_conformance_statement_is_current():
    assert CHECKED_IN.read_text(encoding="utf-8") == render(), (
        "conformance/CONFORMANCE.md is stale: run `wfm conformance -o conformance/CONFORMANCE.md`")


def test_statement_covers_every_status_and_availability_value():
    text = render()
    for status, _ in STATUS_CONDITIONS + UPS_STATUS_CONDITIONS + MPPS_STATUS_CONDITIONS:
        assert f"| {status.hex} |" in text
    for value in Availability:
        assert f"| {value.value} |" in text
