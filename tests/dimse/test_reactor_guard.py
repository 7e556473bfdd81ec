"""pynetdicom's requestor reactor may take a response meant for the request waiting on it (its issue
#875) and drop it: the request then returns an empty Dataset. Our associations (`NoDelayAE`) hand the
reactor only requests; a response waits in the queue for its request."""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification

from workflow.dimse.nodelay import NoDelayAE


@pytest.fixture(scope="module")
def scp_port():
    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield server.server_address[1]
    server.shutdown()


def _response() -> C_ECHO:
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo = 1
    rsp.AffectedSOPClassUID = Verification
    rsp.Status = 0x0000
    return rsp


def _left_after_reactor_turns(ae_class, port: int) -> int:
    """Put a response in the association's queue, let its reactor turn a few times, and say how many
    messages are still queued."""
    ae = ae_class(ae_title="SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert assoc.is_established
    turns = threading.Semaphore(0)
    reactor_take = assoc.dimse.get_msg

    def counted(block=False):
        if threading.current_thread() is assoc:
            turns.release()
        return reactor_take(block)

    assoc.dimse.get_msg = counted
    try:
        assoc.dimse.msg_queue.put((1, _response()))
        deadline = time.monotonic() + 10
        for _ in range(5):  # five turns of the reactor after the response arrived
            assert turns.acquire(timeout=max(0.0, deadline - time.monotonic()))
        return assoc.dimse.msg_queue.qsize()
    finally:
        assoc.dimse.msg_queue.queue.clear()
        assoc.dimse.get_msg = reactor_take
        assoc.release()


def test_pynetdicoms_reactor_takes_a_waiting_response(scp_port):
    assert _left_after_reactor_turns(AE, scp_port) == 0  # why the guard exists


def test_our_associations_leave_a_response_for_its_request(scp_port):
    assert _left_after_reactor_turns(NoDelayAE, scp_port) == 1


def test_requests_still_reach_the_reactor_and_answers_their_sender(scp_port):
    ae = NoDelayAE(ae_title="SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp_port, ae_title="ECHOSCP")
    try:
        assert all(assoc.send_c_echo().Status == 0 for _ in range(50))
    finally:
        assoc.release()
