"""The read API (non-standard): studies, explanations, reconciliation reports and their integrity, events;
each with its 404 and the read right; every route in the OpenAPI description."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from testkit.http import client, mounted_routes
from testkit.ian import association, make_ian, send
from testkit.ups import ups_association, workitem
from workflow.access.tokens import Tokens
from workflow.kernel.clock import utcnow
from workflow.reconcile import reports
from workflow.reconcile.rules.compare import Tally

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_uid(app):
    """A finished reconciliation run with no findings (recorded as a real run is)."""
    with app.engine.begin() as conn:
        run_id, run_uid = reports.start_run(conn, archive_ae_title="PACS", archive_host="127.0.0.1",
                                            archive_port=104, method="query", scope={}, cutoff=utcnow())
        reports.finish_run(conn, run_id, Tally())
    return run_uid


def test_study_is_what_the_cli_prints(app):
    ian = make_ian()
    with association(app.dicom.port) as assoc:
        assert send(assoc, ian)[0].Status == 0
    import time
    deadline = time.monotonic() + 15
    while app.readiness.pending():  # the readiness worker settles the study's requested procedure first
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with client(app) as http:
        shown = http.get(f"/api/studies/{ian.StudyInstanceUID}")
        assert http.get(f"/api/studies/{generate_uid()}").status_code == 404
    from workflow.overview.study import study_report
    assert shown.status_code == 200 and shown.json() == study_report(app.engine, ian.StudyInstanceUID)


def test_explanations(app):
    uid = generate_uid()
    wi = workitem(InputReadinessState="INCOMPLETE")
    with ups_association(app.dicom.port) as assoc:
        assert assoc.send_n_create(wi, "1.2.840.10008.5.1.4.34.6.1", uid)[0].Status == 0
    with client(app) as http:
        why = http.get(f"/api/workitems/{uid}/explain").json()
        assert why["workitem_uid"] == uid and why["policy"] == app.readiness.explain(uid, utcnow())["policy"]
        assert http.get(f"/api/workitems/{generate_uid()}/explain").status_code == 404
        assert http.get(f"/api/studies/{generate_uid()}/explain").status_code == 404


def test_reconciliation_reports(app, run_uid):
    with client(app) as http:
        listed = http.get("/api/reconciliations").json()
        assert listed[0]["run_uid"] == run_uid and listed[0]["status"] == "COMPLETED"
        as_json = http.get(f"/api/reconciliations/{run_uid}")
        assert as_json.headers["content-type"] == "application/json" and as_json.json()["run_uid"] == run_uid
        assert http.get(f"/api/reconciliations/{run_uid}?format=csv").headers["content-type"].startswith("text/csv")
        assert "<html" in http.get(f"/api/reconciliations/{run_uid}?format=html").text
        assert http.get(f"/api/reconciliations/{run_uid}?format=pdf").status_code == 400
        assert http.get(f"/api/reconciliations/{run_uid}/verify").json()["ok"] is True
        assert http.get(f"/api/reconciliations/{generate_uid()}").status_code == 404


def test_a_changed_report_fails_its_verification(app, run_uid):
    from sqlalchemy import update
    from workflow.reconcile.tables import ReconciliationRun as R
    with app.engine.begin() as conn:
        conn.execute(update(R).where(R.run_uid == run_uid).values(archive_ae_title="TAMPERED"))
    try:
        with client(app) as http:
            answer = http.get(f"/api/reconciliations/{run_uid}/verify")
        assert answer.status_code == 409 and answer.json()["problems"]
    finally:
        with app.engine.begin() as conn:
            conn.execute(update(R).where(R.run_uid == run_uid).values(archive_ae_title="PACS"))


def test_events_listing(app):
    with client(app) as http:
        assert http.get("/api/events").status_code == 200
        assert http.get("/api/events?state=all").status_code == 200
        assert http.get("/api/events?state=some").status_code == 400


def test_every_route_is_in_the_openapi_description(app):
    with client(app) as http:
        described = http.get("/openapi.json").json()["paths"]
    routes = {route.path for route in mounted_routes(app)
              if getattr(route, "methods", None) and getattr(route, "include_in_schema", True)
              and route.path not in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect")}
    assert len(routes) >= 20  # the walk found the routers' routes, not just the app's own few
    assert routes <= set(described), routes - set(described)


def test_the_read_right_is_needed(app, run_uid):
    tokens = Tokens(app.engine)
    notifier = tokens.create("readnotify", "notify")
    reader = tokens.create("readonly", "read")
    app.tokens._open_checked = None
    try:
        for path in ("/api/reconciliations", f"/api/reconciliations/{run_uid}", "/api/events"):
            with client(app) as http:
                assert http.get(path).status_code == 401
            with client(app, notifier) as http:
                assert http.get(path).status_code == 403
            with client(app, reader) as http:
                assert http.get(path).status_code == 200
    finally:
        tokens.revoke("readnotify")
        tokens.revoke("readonly")
        app.tokens._open_checked = None
