"""The reconciliation pages with a configured archive (the reference archive): its schedule with the
next and last run, and "run now" starting a real run whose report the console then shows verified."""

from __future__ import annotations

import re
import time

import pytest

from testkit.http import client, http_app
from workflow.config import Reconcile, RemoteAE
from workflow.console import views

pytestmark = pytest.mark.slow

YEARLY = "0 4 1 1 *"  # never fires by itself during a test


@pytest.fixture(scope="module")
def app(database_url, make_archive):
    archive = make_archive()
    archive.holdings.seed(studies=2, series_per_study=1, instances_per_series=2)  # never announced to us
    remote = RemoteAE("REFARCH", "127.0.0.1", archive.port, reconcile=Reconcile(method="query", schedule=YEARLY))
    with http_app(database_url, remote_ae=(remote,)) as app:
        yield app


def test_schedule_and_run_now(app):
    with client(app) as http:
        page = http.get("/ui/reconciliations")
        schedules = re.search(r'id="schedules">(.*?)</table>', page.text, re.S).group(1)
        assert "REFARCH" in schedules and f"127.0.0.1:{app.settings.remote('REFARCH').port}" in schedules
        assert f"<code>{YEARLY}</code>" in schedules and "-01-01 04:00" in schedules and "never" in schedules
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        cookie = {"Cookie": f"wfm_csrf={token}"}
        unknown = http.post("/ui/reconciliations/run", data={"archive": "NOPE", "csrf": token}, headers=cookie,
                            follow_redirects=False)
        assert "problem=" in unknown.headers["location"] and not views.runs(app.engine)
        started = http.post("/ui/reconciliations/run", data={"archive": "REFARCH", "csrf": token}, headers=cookie,
                            follow_redirects=False)
        assert started.status_code == 303 and "notice=reconciliation+of+REFARCH+started" in started.headers["location"]
        deadline = time.monotonic() + 30
        while not (runs := views.runs(app.engine)) or runs[0]["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.1)
        run = runs[0]
        assert run["status"] == "COMPLETED" and run["by_reason"] == {"UNEXPECTED_IN_ARCHIVE": 4}  # 2 studies x 2 instances
        listing = http.get("/ui/reconciliations").text
        assert f'href="/ui/reconciliations/{run["run_uid"]}"' in re.search(r'id="schedules">(.*?)</table>',
                                                                          listing, re.S).group(1)
        report = http.get(f"/ui/reconciliations/{run['run_uid']}").text
        assert "Verified: the stored findings match" in report and "UNEXPECTED_IN_ARCHIVE" in report
