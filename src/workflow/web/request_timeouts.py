"""Deadlines for reading an HTTP request, which uvicorn does not have: a connection that sends nothing,
headers that never end, a body that stops coming, each held a connection (and a file descriptor) for
ever, a few hundred of them the whole server (slowloris). The DICOM face bounds the same with ARTIM and
`network_timeout`; here a request's headers must arrive within `network_timeout` of the connection or of
the request's first byte (answered 408), and its body may pause no longer than that (the connection is
closed; the handler sees the client gone). Between requests uvicorn's keep-alive timeout applies, and
once a request is read nothing here limits how long its answer takes."""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("workflow.http")

_WHY = b"the request did not come in time"
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
        + str(len(_WHY)).encode() + b"\r\nconnection: close\r\n\r\n" + _WHY)


class TimedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with the read deadlines above (`timeout`: seconds, set per server by
    `timed_http`)."""

    timeout = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm("headers")  # a connection that sends nothing at all

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm("headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):  # a WebSocket is not ours to time
            self._arm("body")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm("body")  # it is coming: the pause starts again

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, waiting_for: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.timeout, self._expired, waiting_for)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, waiting_for: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (the handler has not taken the body yet), not them
            self._arm(waiting_for)
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else None
        log.warning(f"HTTP request's {waiting_for} not received within {self.timeout:g} s (network_timeout); "
                    "connection closed", extra={"peer": peer})
        if waiting_for == "headers":
            self.transport.write(_408)
        self.transport.close()


def timed_http(timeout: float) -> type[TimedHttp]:
    return type("TimedHttp", (TimedHttp,), {"timeout": timeout})
