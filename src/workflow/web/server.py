"""The HTTP face's server: uvicorn in its own thread with its own event loop, started and stopped with
the DICOM face, on a plain HTTP port, an HTTPS port or both (one loop, so the WebSocket event hub serves
either). On stop it finishes requests in flight (up to the grace) before it returns."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from typing import Callable

import uvicorn

from workflow.tls import handshake_failure
from workflow.web.request_timeouts import timed_http

log = logging.getLogger("workflow.http")


class _TlsHandshake(asyncio.Protocol):
    """An accepted HTTPS connection until its TLS handshake is done, then the HTTP protocol's. asyncio's
    own TLS listener (create_server with ssl=) drops a failed handshake without a word; here it is
    reported, as the DICOM TLS port reports one (a Security Alert)."""

    _running: set[asyncio.Task] = set()

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], context: ssl.SSLContext, timeout: float,
                 failed: Callable[[str, str], None]) -> None:
        self._make, self._context, self._timeout, self._failed = make_protocol, context, timeout, failed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        transport.pause_reading()  # the ClientHello is for start_tls, not for this protocol
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        waiting = _UntilConnected()
        try:
            secure = await asyncio.get_running_loop().start_tls(
                transport, waiting, self._context, server_side=True, ssl_handshake_timeout=self._timeout)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - whatever ended the handshake, the connection is refused
            transport.abort()
            # Off the loop: the Security Alert is a database write.
            await asyncio.to_thread(self._failed, f"{peer[0]}:{peer[1]}", handshake_failure(exc, self._timeout))
            return
        waiting.hand_over(self._make(), secure)


class _UntilConnected(asyncio.Protocol):
    """The HTTP protocol's stand-in from the end of the handshake until start_tls returns: the first
    request's bytes may come (in TLS 1.3 they follow the handshake at once) before the transport does."""

    def __init__(self) -> None:
        self._early: list[tuple[str, tuple]] = []

    def data_received(self, data: bytes) -> None:
        self._early.append(("data_received", (data,)))

    def eof_received(self) -> None:
        self._early.append(("eof_received", ()))

    def connection_lost(self, exc: Exception | None) -> None:
        self._early.append(("connection_lost", (exc,)))

    def hand_over(self, protocol: asyncio.Protocol, transport: asyncio.Transport) -> None:
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for name, args in self._early:
            getattr(protocol, name)(*args)


class _Server(uvicorn.Server):
    """uvicorn's server with one more listener, served over TLS from the same loop."""

    tls_listener: tuple[socket.socket, ssl.SSLContext, float] | None = None
    handshake_failed: Callable[[str, str], None] = staticmethod(lambda address, reason: None)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.tls_listener is None:
            return
        sock, context, handshake_timeout = self.tls_listener
        config = self.config

        def create_protocol(_loop=None) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,
                                              app_state=self.lifespan.state, _loop=_loop)

        def accept() -> asyncio.Protocol:
            return _TlsHandshake(create_protocol, context, handshake_timeout, self.handshake_failed)

        tls = await asyncio.get_running_loop().create_server(accept, sock=sock, backlog=config.backlog)
        self.servers.append(tls)


class HttpServer:
    def __init__(self, app, host: str, port: int, grace: float, *, tls: ssl.SSLContext | None = None,
                 tls_port: int = 0, handshake_timeout: float = 10.0, request_timeout: float = 60.0,
                 handshake_failed: Callable[[str, str], None] | None = None) -> None:
        """port: plain HTTP (0: none); tls_port with tls: HTTPS (0: none); handshake_failed(address, reason)
        hears of each HTTPS handshake that failed; request_timeout: see web/request_timeouts.py."""
        self.config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                     http=timed_http(request_timeout),
                                     lifespan="off", ws="websockets-sansio", timeout_graceful_shutdown=max(1, int(grace)),
                                     server_header=False, proxy_headers=False, timeout_keep_alive=30)
        self.server = _Server(self.config)
        if handshake_failed is not None:
            self.server.handshake_failed = handshake_failed
        self.host, self.requested_port = host, port
        self.tls, self.requested_tls_port, self.handshake_timeout = tls, tls_port, handshake_timeout
        self._socket: socket.socket | None = None
        self._tls_socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.on_stop: list = []  # called in the server's loop before it shuts down (close WebSockets)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else 0

    @property
    def tls_port(self) -> int:
        return self._tls_socket.getsockname()[1] if self._tls_socket else 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _bind(self, port: int) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(self.host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock

    def start(self, timeout: float = 15.0) -> None:
        """Listen, or raise the OSError that prevented it (port in use...): the sockets are bound here, so
        the error keeps its errno (uvicorn would only exit)."""
        if self.requested_port:
            self._socket = self._bind(self.requested_port)
        if self.tls is not None and self.requested_tls_port:
            try:
                self._tls_socket = self._bind(self.requested_tls_port)
            except OSError as exc:
                if self._socket:
                    self._socket.close()
                exc.https = True  # which listener failed, for the start-up message
                raise
            self.server.tls_listener = (self._tls_socket, self.tls, self.handshake_timeout)
        self._thread = threading.Thread(target=self._run, name="wfm-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self._failed is not None or not self._thread.is_alive():
                raise self._failed if isinstance(self._failed, OSError) else OSError(str(self._failed or "stopped"))
            if time.monotonic() > deadline:
                raise OSError("the HTTP server did not start in time")
            time.sleep(0.01)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.serve(sockets=[s for s in (self._socket,) if s]))
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            self._failed = OSError(f"cannot listen (uvicorn exit {exc.code})")
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._failed = exc
        finally:
            self._loop.close()

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace), close WebSockets."""
        if self._thread is None or not self._thread.is_alive():
            return
        for callback in self.on_stop:
            try:
                asyncio.run_coroutine_threadsafe(callback(), self._loop).result(5)
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("closing the HTTP face's connections failed")
        self.server.should_exit = True
        self._thread.join(self.config.timeout_graceful_shutdown + 5)
        for sock in (self._socket, self._tls_socket):
            if sock:
                sock.close()
