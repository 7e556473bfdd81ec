"""Ending an association never hangs (dimse/reactor.py `release`, `held`).

pynetdicom's `release()` waits without a limit for the association's reactor to pause. Here a real
requestor association is given a reactor that cannot pause (stuck in a handler the peer's C-ECHO
started) or that has ended while the association still counts as established: `release` must abort
it within the association's ACSE timeout, and the peer must see it end. An ordinary release stays an
A-RELEASE."""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import Verification

from workflow.dimse import event_driven
from workflow.dimse.reactor import held, release

LIMIT = 1.0  # the requestor's ACSE timeout: how long `release` may wait for its reactor


@pytest.fixture(scope="module")
def server():
    event_driven.install()
    ae = AE(ae_title="PEER")
    ae.add_supported_context(Verification, scu_role=True, scp_role=True)  # it may echo the requestor too
    ended = []
    handlers = [(evt.EVT_RELEASED, lambda event: ended.append("released")),
                (evt.EVT_ABORTED, lambda event: ended.append("aborted")),
                (evt.EVT_CONN_CLOSE, lambda event: ended.append("closed"))]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    yield server, ended
    server.shutdown()


def _associate(server, on_echo=None):
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = LIMIT
    handlers = [(evt.EVT_C_ECHO, on_echo)] if on_echo else []
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="PEER", evt_handlers=handlers,
                         ext_neg=[build_role(Verification, scu_role=True, scp_role=True)])
    assert assoc.is_established
    return assoc


def _peer_side(server, assoc):
    """The server's half of `assoc`, once it is there (earlier tests' halves may still be closing)."""
    port = assoc.dul.socket.socket.getsockname()[1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for peer in server.active_associations:
            if peer.requestor.port == port and peer.is_established:
                return peer
        time.sleep(0.01)
    raise AssertionError("the server never saw the association")


def _wait(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _echo_from_peer(server, assoc) -> threading.Thread:
    peer = _peer_side(server, assoc)
    sender = threading.Thread(target=peer.send_c_echo, daemon=True)
    sender.start()
    return sender


def test_an_ordinary_release_is_an_a_release(server):
    server, ended = server
    ended.clear()
    assoc = _associate(server)
    release(assoc)
    assert assoc.is_released and not assoc.is_aborted
    assert _wait(lambda: "released" in ended), ended


def test_a_reactor_stuck_in_a_handler_gets_an_abort_within_the_acse_timeout(server):
    server, ended = server
    ended.clear()
    entered, unblock = threading.Event(), threading.Event()

    def stuck(event):
        entered.set()
        unblock.wait(30)
        return 0x0000

    assoc = _associate(server, stuck)
    _echo_from_peer(server, assoc)
    assert entered.wait(5), "the peer's C-ECHO never reached the handler"
    try:
        started = time.monotonic()
        release(assoc)
        took = time.monotonic() - started
        assert assoc.is_aborted and not assoc.is_established
        assert LIMIT <= took < LIMIT + 2, f"release took {took:.2f} s"
        assert _wait(lambda: "aborted" in ended or "closed" in ended), ended
    finally:
        unblock.set()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the fault, on purpose
def test_a_reactor_that_has_ended_gets_an_abort_at_once(server):
    """The shape of the hang seen in CI: the reactor thread is gone, outside any handler, while the
    association still counts as established; pynetdicom's release() would wait for it for ever."""
    server, ended = server
    ended.clear()
    assoc = _associate(server)

    def fault(block=False):
        raise SystemExit  # ends the reactor thread between two turns of its loop

    assoc.dimse.get_msg = fault
    assert _wait(lambda: not assoc.is_alive()), "the reactor thread did not end"
    assert assoc.is_established and not assoc._is_paused
    started = time.monotonic()
    release(assoc)
    assert time.monotonic() - started < LIMIT
    assert assoc.is_aborted and not assoc.is_established
    assert _wait(lambda: "aborted" in ended or "closed" in ended), ended


def test_a_hold_ended_by_an_error_lets_the_reactor_serve_the_peer_again(server):
    """`held`: a request abandoned part-way (an error while reading its responses) must not leave the
    reactor parked, or the peer's next request on the association is never answered."""
    server, _ = server
    echoed = threading.Event()
    assoc = _associate(server, lambda event: echoed.set() or 0x0000)
    try:
        with pytest.raises(ValueError):
            with held(assoc):
                raise ValueError("a response that makes no sense")
        _echo_from_peer(server, assoc)
        assert echoed.wait(5), "the reactor stayed parked: the peer's C-ECHO was never handled"
    finally:
        release(assoc)
