"""TCP_NODELAY on every DICOM socket we accept or open.

pynetdicom leaves Nagle's algorithm on. A DIMSE request/response pair then waits ~40 ms for the
peer's delayed ACK, capping a connection at ~20 messages/s. Both ends need it: the acceptor for its
responses, the requestor for its requests.
"""

from __future__ import annotations

import socket

from pynetdicom import AE
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from workflow.dimse import closing
from workflow.dimse.reactor import guard


def set_nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
        return sock


class NoDelayAssociationServer(ThreadedAssociationServer):
    """The threaded association server, with TCP_NODELAY on each accepted connection."""

    def get_request(self):  # type: ignore[override]
        client_socket, address = super().get_request()
        set_nodelay(client_socket)
        return client_socket, address
