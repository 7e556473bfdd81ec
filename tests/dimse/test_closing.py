"""A local request that reaches the DUL after the association began to end (dimse/closing.py).

The races as they happen: a holdings query aborts its association after a DIMSE timeout, and its idle
timer releases it a moment later; a client answers the peer's request just after sending its
A-RELEASE-RQ. Here both requests are queued at once on a real association, so the DUL takes the second
in Sta13 (awaiting transport close) or Sta7 (awaiting A-RELEASE-RP) every time: it must drop it and
go on to end the association, not die with "Invalid event 'Evt11' for the current state 'Sta13'"."""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.pdu_primitives import A_ABORT, A_RELEASE, P_DATA
from pynetdicom.sop_class import Verification

from workflow.dimse import closing, event_driven


@pytest.fixture(scope="module")
def server():
    event_driven.install()
    closing.install()
    ae = AE(ae_title="PEER")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield server
    server.shutdown()


@pytest.fixture
def thread_errors():
    seen: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)
    yield seen
    threading.excepthook = previous


def _wait(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def _abort() -> A_ABORT:
    abort = A_ABORT()
    abort.abort_source = 0x00
    return abort


def _queue_both_and_end(server, thread_errors, first, late) -> None:
    """`first` and `late` queued at once on a real association: the DUL takes `late` in the state
    `first` leads to. The association must end (Sta1), the DUL thread with it, and nothing raise."""
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = 5
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="PEER")
    assert assoc.is_established
    dul = assoc.dul
    queued = dul.to_provider_queue
    with queued.mutex:  # the DUL looks at the queue at least every 10 ms
        queued.queue.extend([first, late])

    assert _wait(lambda: dul.state_machine.current_state == "Sta1"), dul.state_machine.current_state
    assert not thread_errors, thread_errors
    assert not queued.queue, "the late request was left queued"
    assoc.kill()
    assert _wait(lambda: not dul.is_alive())
    assert not thread_errors, thread_errors


@pytest.mark.parametrize("late", ["release", "abort"])
def test_a_request_queued_behind_an_abort_is_dropped_and_the_connection_closes(server, thread_errors, late):
    _queue_both_and_end(server, thread_errors, _abort(), A_RELEASE() if late == "release" else _abort())  # Sta13


@pytest.mark.parametrize("late", ["P-DATA", "release"])
def test_a_request_queued_behind_our_release_is_dropped_and_the_release_completes(server, thread_errors, late):
    _queue_both_and_end(server, thread_errors, A_RELEASE(), P_DATA() if late == "P-DATA" else A_RELEASE())  # Sta7
