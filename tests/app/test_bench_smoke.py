"""Each benchmark runs once in its smoke size so it keeps working (numbers are not asserted)."""

from __future__ import annotations

import pytest

import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_ian_ingest_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "ian_ingest.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["server", "mode", "IAN/s"]
    assert any(line.startswith("wfm, SQLite") for line in lines)
    assert any(line.startswith("ceiling") for line in lines)


def test_ups_find_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "ups_find.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["backend", "query"]
    assert any(line.startswith("SQLite") for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("backend") and "claims" in line)
    assert lines[header].split()[-4:] == ["durable/s", "durable/baseline", "wfm/durable", "(range)"]
    row = lines[header + 2].split()  # the three servers claimed in 5 rounds, the durable baseline among them
    assert len(row) == 11 and row[2] == "5", row


def test_readiness_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "readiness.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["backend", "case"]
    assert any("N-GET, 200 inputs" in line for line in lines)
    assert any("200 instances, 20 IANs" in line for line in lines)
    assert any(line.startswith("SQLite") and "whole study, CPU s/1000 inst." in line for line in lines)


def test_readiness_passes_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "readiness_passes.py"), "--smoke", "--backend", "sqlite"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["backend", "instances"]
    row = next(line.split() for line in lines if line.startswith("SQLite"))
    assert row[1] == "2000" and all(float(value) > 0 for value in row[2:]), row  # every pass was timed


def test_reconcile_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "reconcile.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["backend", "method", "seconds"]
    rows = [line for line in lines if line.startswith("SQLite")]
    assert [row.split()[1] for row in rows] == ["inventory", "repository", "query"]
    # Every path finds the discrepancies the script seeded, and only those.
    assert all('"MISSING_IN_ARCHIVE": 25' in row and '"UNEXPECTED_IN_ARCHIVE": 5' in row for row in rows)


def test_inventory_parse_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "inventory_parse.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "stream reader: 200 instances" in result.stdout and "ratio per instance" in result.stdout


def test_event_latency_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "event_latency.py"), "--smoke", "--backend", "sqlite"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["server", "phase", "p50"]
    assert any(line.startswith("floor, SQLite") and "idle" in line for line in lines)  # the baseline ran
    idle = next(line for line in lines if line.startswith("wfm, SQLite") and "idle" in line)
    assert float(idle.split()[8]) > 0  # wfm/floor, the ratio to that baseline
    assert any(line.startswith("wfm, SQLite") and "IANs at" in line for line in lines)
