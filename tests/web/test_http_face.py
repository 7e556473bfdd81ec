"""The HTTP face starts and stops with the DICOM face, answers health and metrics, and asks for a token
once one exists (401 without one, 403 without the right)."""

from __future__ import annotations

import time

import pytest

from testkit.http import client
from workflow.access.tokens import Tokens

pytestmark = pytest.mark.slow


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


def test_head_is_get_without_the_body(app):
    """A load balancer's `HEAD /api/health` check (RFC 9110 9.3.2)."""
    with client(app) as http:
        head, get = http.head("/api/health"), http.get("/api/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))


def test_an_unknown_path_or_method_is_answered_with_its_reason(app):
    with client(app) as http:
        missing = http.get("/dicom-web/nothing-here")
        wrong = http.delete("/dicom-web/workitems")
    assert missing.status_code == 404 and missing.headers["Warning"].startswith("299 wfm: no resource at ")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD, POST"  # Search and Create
    assert "DELETE is not allowed here" in wrong.headers["Warning"]


def test_a_client_gone_mid_body_is_a_warning_not_an_error(app, caplog):
    import logging
    import socket

    with caplog.at_level(logging.INFO, "workflow.http"):
        with socket.create_connection(("127.0.0.1", app.http.port)) as raw:
            raw.sendall(b"POST /api/ian HTTP/1.1\r\nHost: x\r\nContent-Type: application/dicom+json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"0020000D\"")
        deadline = time.monotonic() + 10
        while not any("went away" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


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
