"""A request sent on an association just after it received an N-EVENT-REPORT goes out
(dimse/reactor.py `count_parked_as_paused`).

pynetdicom serves an N-EVENT-REPORT to a requestor in a thread of its own, which marks the reactor
paused while the handler runs and unpaused once it has answered. A request clears the reactor's
checkpoint and waits for that mark; when the reactor parked before the event's thread unmarked it, the
request used to wait for ever (an Inventory C-FIND sent right after the event that ended production hung
a CI run). Here that order is made to happen, not hoped for: the handler is held until the reactor is
parked, then let go, and only then is the request sent."""

from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

from workflow.dimse import event_driven
from workflow.dimse.reactor import hold_reactor, release

WAIT = 5.0  # seconds for anything here that works to happen


@pytest.fixture(scope="module")
def server():
    event_driven.install()
    ae = AE(ae_title="PEER")
    for uid in (Verification, StorageCommitmentPushModel):
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield server
    server.shutdown()


def _until(condition) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)
    return condition()


def _peer_side(server, assoc):
    port = assoc.dul.socket.socket.getsockname()[1]
    found = []
    _until(lambda: found.extend(p for p in server.active_associations
                                if p.requestor.port == port and p.is_established) or found)
    assert found, "the server never saw the association"
    return found[0]


def test_a_request_sent_once_an_event_is_answered_goes_out(server):
    entered, go = threading.Event(), threading.Event()

    def on_event(event):
        entered.set()
        go.wait(WAIT)
        return 0x0000, None

    ae = AE(ae_title="SCU")
    for uid in (Verification, StorageCommitmentPushModel):
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="PEER",
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event)])
    assert assoc.is_established
    info = Dataset()
    info.TransactionUID = "1.2.826.0.1.3680043.2.1143.2"
    answered = []
    try:
        peer = _peer_side(server, assoc)
        report = threading.Thread(target=lambda: answered.append(peer.send_n_event_report(
            info, 1, StorageCommitmentPushModel, "1.2.826.0.1.3680043.2.1143.1")))
        report.start()
        assert entered.wait(WAIT), "the event never reached the handler"
        assert hold_reactor(assoc), "the reactor did not park"  # as a request about to be sent does
        go.set()
        report.join(WAIT)
        assert answered and answered[0][0].Status == 0x0000
        # The event's thread has answered and unmarked the reactor, which stays parked: the state a
        # request met when it hung.
        assert _until(lambda: assoc.__dict__.get("_is_paused") is False)

        echoed = []
        echo = threading.Thread(target=lambda: echoed.append(assoc.send_c_echo()), daemon=True)
        echo.start()
        echo.join(WAIT)
        assert not echo.is_alive(), "the C-ECHO waited for a reactor that was already parked"
        assert echoed[0].Status == 0x0000
    finally:
        assoc.__dict__["_is_paused"] = True  # frees a C-ECHO left waiting, so that the test can end
        go.set()
        release(assoc)
