"""The HTTP face's server: uvicorn in its own thread with its own event loop, started and stopped with
the DICOM face. On stop it finishes requests in flight (up to the grace) before it returns."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn

log = logging.getLogger("workflow.http")


class HttpServer:
    def __init__(self, app, host: str, port: int, grace: float) -> None:
        self.config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                     lifespan="off", ws="websockets-sansio", timeout_graceful_shutdown=max(1, int(grace)),
                                     server_header=False, proxy_headers=False, timeout_keep_alive=30)
        self.server = uvicorn.Server(self.config)
        self.host, self.requested_port = host, port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.on_stop: list = []  # called in the server's loop before it shuts down (close WebSockets)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self, timeout: float = 15.0) -> None:
        """Listen, or raise the OSError that prevented it (port in use...): the socket is bound here, so
        the error keeps its errno (uvicorn would only exit)."""
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
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
            self._loop.run_until_complete(self.server.serve(sockets=[self._socket]))
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
        self._socket.close()
