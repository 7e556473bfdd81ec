"""The HTTP face starts and stops with the DICOM face, answers health and metrics, and asks for a token
once one exists (401 without one, 403 without the right)."""

from __future__ import annotations

import pytest

from testkit.http import client, http_app
from workflow.access.tokens import Tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url) as app:
        yield app


def test_health_says_the_database_is_reachable(app):
    with client(app) as http:
        answer = http.get("/api/health")
    assert answer.status_code == 200 and answer.json()["database"] == "reachable"


def test_metrics_count_requests_of_both_faces(app):
    from testkit.ian import association, make_ian, send

    with association(app.dicom.port) as assoc:
        assert send(assoc, make_ian())[0].Status == 0
    with client(app) as http:
        http.get("/api/health")
        text = http.get("/metrics").text
    assert 'wfm_requests_total{face="dimse",service="Instance Availability Notification N_CREATE",status="0000"}' in text
    assert 'wfm_requests_total{face="http",service="health",status="200"}' in text
    assert "wfm_outbox_backlog" in text and "wfm_readiness_backlog" in text


def test_tokens_once_one_exists(app):
    tokens = Tokens(app.engine)
    with client(app) as anonymous:
        assert anonymous.get("/metrics").status_code == 200  # no token in force: open, with a warning at start
        reader = tokens.create("reader", "read")
        performer = tokens.create("performer", "perform")
        tokens._open_checked = None
        app.tokens._open_checked = None  # the server's cache: as if its 2 s had passed
        refused = anonymous.get("/metrics")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.headers["Warning"].startswith("299 wfm: ")
    with client(app, reader) as http:
        assert http.get("/metrics").status_code == 200
    with client(app, performer) as http:
        assert http.get("/metrics").status_code == 403
    with client(app, "wfm_not-a-token") as http:
        assert http.get("/metrics").status_code == 401
    tokens.revoke("reader")
    with client(app, reader) as http:
        assert http.get("/metrics").status_code == 401
    with client(app) as anonymous:
        assert anonymous.get("/api/health").status_code == 200  # health never needs a token
    tokens.revoke("performer")
    app.tokens._open_checked = None
