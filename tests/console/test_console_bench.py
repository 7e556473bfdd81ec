"""The console benchmark runs in its smoke size so it keeps working (numbers are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "console.py"


def test_console_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH), "--smoke", "--backend", "sqlite"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["backend", "page", "n"]
    pages = {line[12:34].strip() for line in lines if line.startswith("SQLite")}
    assert {"worklist, no filter", "worklist, page 2+", "workitem", "study", "reconciliation", "events",
            "status", "chart, cold"} <= pages
