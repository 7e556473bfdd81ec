"""TCP_NODELAY and a send timeout on every DICOM socket we accept or open.

pynetdicom leaves Nagle's algorithm on. A DIMSE request/response pair then waits ~40 ms for the
peer's delayed ACK, capping a connection at ~20 messages/s. Both ends need it: the acceptor for its
responses, the requestor for its requests.

pynetdicom also sends on a blocking socket without a timeout (a requestor's is cleared after connect;
an accepted one never had one): a peer that stops reading leaves the DUL thread in `send` for good,
and an abort, which that thread would have to process, waits with it; a server stopping waited for
ever. With SO_SNDTIMEO a send that makes no progress for the network timeout fails, which pynetdicom
takes as the transport closing (Evt17): the association ends.
"""

from __future__ import annotations

import socket
import struct

from pynetdicom import AE
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from workflow.dimse import closing
from workflow.dimse.reactor import guard


def set_nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def set_send_timeout(sock: socket.socket | None, seconds: float | None) -> None:
    """A send blocked for `seconds` fails (SO_SNDTIMEO: the kernel's, so it holds whatever blocking
    mode pynetdicom sets later)."""
    if sock is not None and seconds:
        whole = int(seconds)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))


class NoDelayAE(AE):
    """An AE whose outgoing associations use TCP_NODELAY (set before connect; it survives it) and
    hold pynetdicom's reactor before each request (`reactor.guard`); a request racing the association's
    close is dropped, not fatal to its DUL thread (`closing`)."""

    def associate(self, *args, **kwargs):  # type: ignore[override]
        closing.install()
        return guard(super().associate(*args, **kwargs))

    def _create_socket(self, assoc, address, tls_args) -> AssociationSocket:  # type: ignore[override]
        sock = super()._create_socket(assoc, address, tls_args)
        set_nodelay(sock.socket)
        set_send_timeout(sock.socket, assoc.network_timeout)
        return sock


class NoDelayAssociationServer(ThreadedAssociationServer):
    """The threaded association server, with TCP_NODELAY and the send timeout on each accepted
    connection."""

    def get_request(self):  # type: ignore[override]
        client_socket, address = super().get_request()
        set_nodelay(client_socket)
        set_send_timeout(client_socket, self.ae.network_timeout)
        return client_socket, address
