"""Guards against peers that are slow, hostile or broken, so that one of them never hurts the others:
the TLS handshake done in the connection's own thread under the ARTIM timeout (pynetdicom would do it in
the acceptor thread, where one stalled handshake blocks every new association), and a ceiling on the
size of the data set one request may carry."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Callable

from workflow.dimse.nodelay import NoDelayAssociationServer
from workflow.tls import handshake_failure

log = logging.getLogger("workflow.dimse")


class TlsAssociationServer(NoDelayAssociationServer):
    """A DICOM TLS listener: accepts in the acceptor thread, handshakes in the connection's thread."""

    tls: ssl.SSLContext | None = None
    handshake_timeout: float = 10.0
    handshake_failed: Callable[[str, str], None] = staticmethod(lambda address, reason: None)

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        if self.tls is None:
            return super().finish_request(request, client_address)
        address = f"{client_address[0]}:{client_address[1]}"
        request.settimeout(self.handshake_timeout)
        try:
            secure = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.handshake_failed(address, handshake_failure(exc, self.handshake_timeout))
            _close(request)
            return None
        secure.settimeout(None)  # from here the association's own timeouts apply
        return super().finish_request(secure, client_address)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


class DatasetLimit:
    """EVT_PDU_RECV handler: adds up the data set fragments of the request being received on each
    association and aborts an association whose data set grows past `limit` bytes (the peer is told by
    an A-ABORT; nothing of that request reaches a handler)."""

    COMMAND, LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)

    def __init__(self, limit: int, exceeded: Callable[[object, int], None]) -> None:
        self.limit = limit
        self.exceeded = exceeded
        self._sizes: dict[int, int] = {}
        self._aborted: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        key = id(event.assoc)
        with self._lock:
            if key in self._aborted:
                return
            size = self._sizes.get(key, 0)
            for item in items:
                value = item.presentation_data_value
                header = value[0]
                if header & self.COMMAND:
                    continue
                size += len(value) - 1
                if header & self.LAST:
                    size = 0 if size <= self.limit else size
            over = size > self.limit
            self._sizes[key] = size
            if over:
                self._aborted.add(key)
        if over:
            self.exceeded(event.assoc, size)
            # Aborting from the DUL's own thread would wait on itself.
            threading.Thread(target=event.assoc.abort, name="wfm-abort", daemon=True).start()

    def over(self, assoc) -> bool:
        """True for an association whose request outgrew the limit: its handler must not run (the
        PDU that tipped it over is already on its way to the DIMSE layer when the abort starts)."""
        with self._lock:
            return id(assoc) in self._aborted

    def forget(self, event) -> None:
        with self._lock:
            self._sizes.pop(id(event.assoc), None)
            self._aborted.discard(id(event.assoc))
