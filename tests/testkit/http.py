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
def http_app(database_url: str, http: bool = True, **overrides):
    """A started App with both faces (`http=False`: the DICOM face only); yields it (its HTTP port is
    app.http.port)."""
    app = App(test_settings(database_url, http_port=free_port() if http else 0, **overrides))
    app.start()
    try:
        yield app
    finally:
        app.stop()


def client(app: App, token: str | None = None, timeout: float = 20.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{app.http.port}", headers=headers, timeout=timeout)


class EventSocket:
    """A UPS-RS subscriber's event channel: a WebSocket to /dicom-web/subscribers/{aetitle}."""

    def __init__(self, app: App, ae_title: str, token: str | None = None) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.socket = connect(f"ws://127.0.0.1:{app.http.port}/dicom-web/subscribers/{ae_title}",
                              additional_headers=headers, open_timeout=10)  # closed by close()

    def next(self, timeout: float = 15.0) -> dict:
        import json
        return json.loads(self.socket.recv(timeout=timeout))

    def take(self, count: int, timeout: float = 15.0) -> list[dict]:
        return [self.next(timeout) for _ in range(count)]

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> "EventSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def mounted_routes(app: App) -> list:
    """Every route of the HTTP face, those of included routers too (FastAPI keeps an included router's
    routes inside it, so `routes` alone lists almost nothing)."""
    def walk(items):
        for route in items:
            inner = getattr(route, "original_router", None)
            yield from walk(inner.routes) if inner is not None else [route]
    return list(walk(app.http.config.app.routes))
