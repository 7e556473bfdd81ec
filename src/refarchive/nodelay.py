"""TCP_NODELAY on every socket the reference archive accepts or opens.

pynetdicom leaves Nagle's algorithm on, so each request/response pair waits ~40 ms for the peer's
delayed ACK. Same idea as the product's own module; copied, because this package must not import it.
"""

from __future__ import annotations

import socket

from pynetdicom import AE
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer


def set_nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayAE(AE):
    """Outgoing associations (C-MOVE sub-associations, test SCUs) with TCP_NODELAY."""

    def _create_socket(self, assoc, address, tls_args) -> AssociationSocket:  # type: ignore[override]
        sock = super()._create_socket(assoc, address, tls_args)
        set_nodelay(sock.socket)
        return sock


class NoDelayAssociationServer(ThreadedAssociationServer):
    """Accepted connections with TCP_NODELAY."""

    def get_request(self):  # type: ignore[override]
        client_socket, address = super().get_request()
        set_nodelay(client_socket)
        return client_socket, address
