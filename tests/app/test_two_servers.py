"""Two `wfm serve` processes on one PostgreSQL behind one HAProxy address, one of them killed with SIGKILL
while the load generator is halfway: every acknowledged IAN is stored once with all its instances,
every acknowledged workitem exists, each State Report reaches the subscriber in commit order, and the
run completes through the survivor (bench/two_servers.py --smoke --kill does the work and the checks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.orthanc import REQUIRE_ORTHANC

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_two_servers_behind_haproxy_lose_nothing_when_one_is_killed(postgres_admin_url):
    if shutil.which("haproxy") is None:
        if REQUIRE_ORTHANC:  # CI: every real peer is installed
            pytest.fail("haproxy is not installed (.ci/run installs it)")
        pytest.skip("haproxy is not installed: apt-get install haproxy")
    result = subprocess.run([sys.executable, str(BENCH / "two_servers.py"), "--smoke", "--kill", "--json"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WFM_TEST_POSTGRES_URL": postgres_admin_url})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["killed"] and figures["acked_ians"] == 120 and figures["acked_workitems"] == 30
    assert (figures["lost_ians"], figures["lost_workitems"], figures["missing_reports"]) == (0, 0, 0)
    assert figures["reports_in_commit_order"]
