"""bench/upsrs.py runs once in its smoke size so it keeps working (numbers are not asserted; the
script itself fails when the two faces answer different workitems)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_upsrs_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "upsrs.py"), "--smoke", "--backend", "sqlite"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["backend", "query", "matches", "find"]
    assert sum(line.startswith("SQLite") for line in lines) == 7  # six query kinds and the claims
    assert "target (UPS-RS search p95 <= C-FIND p95" in result.stderr
