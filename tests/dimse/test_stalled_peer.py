"""A peer that stops reading cannot keep the server from stopping (dimse/nodelay.py send timeout).

pynetdicom sends on a blocking socket without a timeout. A requestor that sends requests but no longer
reads fills the server's socket; its DUL thread then waits in `send` for good, and a stop, whose
A-ABORT that thread would have to process, waited with it. Here a real association's requestor stops
reading (its DUL no longer looks at the socket, its receive buffer is small) and floods C-ECHO
requests: the server must give up on it after its network timeout and stop."""

from __future__ import annotations

import socket
import threading
import time

from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification

from testkit.db import test_settings
from workflow.app import App

NETWORK_TIMEOUT = 2.0


class SmallWindowAE(AE):
    def _create_socket(self, assoc, address, tls_args):
        sock = super()._create_socket(assoc, address, tls_args)
        sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        return sock


def _stalled_requestor(port: int):
    ae = SmallWindowAE(ae_title="STALLED")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
    assert assoc.is_established
    assoc.dul._is_transport_event = lambda: False  # its DUL no longer reads the socket
    return assoc


def _wait_for(found, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while not found() and time.monotonic() < deadline:
        time.sleep(0.01)
    return found()


def test_a_requestor_that_stops_reading_does_not_keep_the_server_from_stopping(tmp_path):
    app = App(test_settings(f"sqlite:///{tmp_path / 'wfm.db'}", network_timeout=NETWORK_TIMEOUT,
                            shutdown_grace=1.0))
    app.start()
    assoc = _stalled_requestor(app.dicom.port)
    context_id = assoc.accepted_contexts[0].context_id
    try:
        # The server's socket buffer fixed small too (Linux would grow it to 4 MB): full sooner.
        [served] = _wait_for(lambda: app.dicom._server.active_associations)
        served.dul.socket.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for message_id in range(1, 3001):  # ~300 KB of responses: many times what both buffers hold
            echo = C_ECHO()
            echo.MessageID = message_id
            echo.AffectedSOPClassUID = Verification
            assoc.dimse.send_msg(echo, context_id)
        # The server answers while the stop's grace runs, until its socket is full and its DUL waits.
        stopped = threading.Thread(target=app.stop, daemon=True)
        started = time.monotonic()
        stopped.start()
        stopped.join(NETWORK_TIMEOUT + 10)
        took = time.monotonic() - started
        assert not stopped.is_alive(), "the stop waited for the stalled requestor"
        assert took < NETWORK_TIMEOUT + 8, f"the stop took {took:.1f} s"
    finally:
        assoc.dul.socket._shutdown_socket()  # unblocks a server stuck in send, whatever happened
        assoc.dul._kill_thread = True  # the requestor's DUL, deaf to its socket, would never end
        assoc.dul.join(5)
