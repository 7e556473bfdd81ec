"""A client that opens a connection and then sends nothing, or its request's headers or body only in
part, is cut off after network_timeout (slowloris); a request read whole is answered however long it
takes, and a kept-alive connection carries request after request."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from testkit.http import http_app

pytestmark = pytest.mark.slow

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url, network_timeout=TIMEOUT) as app:
        yield app


def closed_after(app, sent: bytes) -> tuple[float, bytes]:
    """Seconds until the server closed the connection after `sent`, and what it answered."""
    with socket.create_connection(("127.0.0.1", app.http.port)) as raw:
        raw.settimeout(15)
        raw.sendall(sent)
        started, answer = time.monotonic(), b""
        while chunk := raw.recv(4096):
            answer += chunk
        return time.monotonic() - started, answer


@pytest.mark.parametrize("sent, answer", [
    (b"", b""),  # nothing at all: no request to answer
    (b"GET /api/health HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 408 "),  # headers never end
    (b"POST /api/ian HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", b""),  # the body stops
], ids=["silent", "headers", "body"])
def test_a_request_that_does_not_come_is_cut_off(app, caplog, sent, answer):
    with caplog.at_level(logging.WARNING, "workflow.http"):
        took, got = closed_after(app, sent)
    assert TIMEOUT * 0.8 < took < TIMEOUT + 10 and got.startswith(answer), (took, got)
    assert any(f"not received within {TIMEOUT:g} s" in r.getMessage() for r in caplog.records)


def health(raw: socket.socket) -> bytes:
    """GET /api/health on `raw`; the whole response (its Content-Length read)."""
    raw.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += raw.recv(4096)
    return answer


def test_a_kept_alive_connection_waits_between_requests(app, caplog):
    """Idle between requests is uvicorn's keep-alive (30 s), not the read deadline."""
    with caplog.at_level(logging.WARNING, "workflow.http"), socket.create_connection(("127.0.0.1", app.http.port)) as raw:
        raw.settimeout(15)
        for _ in range(2):
            assert health(raw).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT * 1.5)
        assert health(raw).startswith(b"HTTP/1.1 200 ")  # the same connection, still open
    assert not [r for r in caplog.records if "not received" in r.getMessage()]
