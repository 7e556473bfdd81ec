"""bench/inventory_build.py runs in its smoke size so it keeps working (numbers are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_inventory_build_benchmark_smoke():
    result = subprocess.run([sys.executable, str(BENCH / "inventory_build.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["backend", "what", "seconds"]
    assert "baseline" in lines[1]
    [row] = [line for line in lines if line.startswith("SQLite")]
    assert "COMPLETE: 20 study records in 1 Inventory instance(s)" in row
