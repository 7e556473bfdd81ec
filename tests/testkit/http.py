"""The HTTP face in tests: a server with HTTP on a free port of 127.0.0.1, and a client for it."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import httpx

from testkit.db import test_settings
from workflow.app import App


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_app(database_url: str, **overrides):
    """A started App with both faces; yields it (its HTTP port is app.http.port)."""
    app = App(test_settings(database_url, http_port=free_port(), **overrides))
    app.start()
    try:
        yield app
    finally:
        app.stop()


def client(app: App, token: str | None = None, timeout: float = 20.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{app.http.port}", headers=headers, timeout=timeout)
