"""pynetdicom's reactors wait for work (dimse/event_driven.py): an idle association's two loops turn
about 100 times a second, not 1,000, and requests are still served in both directions, over TCP and TLS
alike (the TLS tests of the server run on the same transport)."""

from __future__ import annotations

import gc
import os
import threading
import time
from io import BytesIO

import pytest
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification

from workflow.dimse import event_driven

WINDOW = 0.5  # seconds an association idles while its loops are counted


@pytest.fixture(scope="module")
def echo_server():
    event_driven.install()
    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(Verification)
    echoes = []
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_ECHO, lambda event: echoes.append(1) or 0x0000)])
    yield server, echoes
    server.shutdown()


def _associate(port: int):
    ae = AE(ae_title="SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert assoc.is_established
    return assoc


def _count_calls(owner, name: str, thread) -> list[int]:
    """Count calls of `owner.name` made from `thread` (the loop's own turns)."""
    counter = [0]
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        if threading.current_thread() is thread:
            counter[0] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)
    return counter


def test_an_idle_association_turns_its_loops_rarely(echo_server):
    server, _ = echo_server
    assoc = _associate(server.server_address[1])
    try:
        assert assoc.send_c_echo().Status == 0  # both loops have had work once: their wakers exist
        accepted = next(a for a in server.active_associations if a.is_established)
        counts = {
            "acceptor DUL": _count_calls(accepted.dul, "_is_transport_event", accepted.dul),
            "acceptor reactor": _count_calls(accepted.dimse, "get_msg", accepted),
            "requestor DUL": _count_calls(assoc.dul, "_is_transport_event", assoc.dul),
        }
        time.sleep(WINDOW)
        turns = {name: counter[0] for name, counter in counts.items()}
        # Polling every millisecond turns each loop ~450 times in half a second; waiting for work
        # with a 10 ms bound, ~50.
        limit = 3 * WINDOW / event_driven.BOUND
        assert all(n <= limit for n in turns.values()), turns
        assert all(n > 0 for n in turns.values()), turns  # still turning: timers and flags are checked
    finally:
        assoc.release()


def test_requests_are_served_in_both_directions_after_idling(echo_server):
    server, echoes = echo_server
    before = len(echoes)
    assoc = _associate(server.server_address[1])
    try:
        for _ in range(3):
            time.sleep(3 * event_driven.BOUND)  # let both ends settle into their waits
            assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    assert len(echoes) - before == 3
    assert assoc.is_released


def test_what_a_loop_waits_for_wakes_it(echo_server):
    """The hand-offs that must not wait out the bound: a requestor pausing the reactor before it sends
    (`_reactor_checkpoint.clear()`, pynetdicom's send_* then waits until the reactor is paused) and a
    primitive queued for the DUL to send."""
    server, _ = echo_server
    assoc = _associate(server.server_address[1])
    try:
        assert assoc.send_c_echo().Status == 0  # the wakers exist once each loop has idled
        reactor_wakes, dul_wakes = [], []
        reactor_waker, dul_waker = assoc.__dict__["_wfm_waker"], assoc.dul.__dict__["_wfm_waker"]
        wake_reactor, wake_dul = reactor_waker.wake, dul_waker.wake
        reactor_waker.wake = lambda: reactor_wakes.append(1) or wake_reactor()
        dul_waker.wake = lambda: dul_wakes.append(1) or wake_dul()
        assoc._reactor_checkpoint.clear()
        assert reactor_wakes, "pausing the reactor did not wake it"
        assoc._reactor_checkpoint.set()
        assert assoc.send_c_echo().Status == 0
        assert dul_wakes, "a request queued for the DUL did not wake it"
    finally:
        assoc.release()


def test_a_message_s_fragments_are_queued_as_one_block(echo_server):
    """Two threads sending on one association (a handler's response and another thread's request, which
    pynetdicom allows) queue each message's P-DATA fragments together, even when the thread switches
    between fragments (a wake-up is a system call): interleaved, the peer cannot reassemble them."""
    server, _ = echo_server
    assoc = _associate(server.server_address[1])
    queued: list[str] = []
    send_pdu = assoc.dul.send_pdu

    def record(primitive):
        queued.append(threading.current_thread().name)
        time.sleep(0.001)  # let the other thread run between two fragments

    assoc.dul.send_pdu = record
    try:
        def send(name: str) -> threading.Thread:
            store = C_STORE()
            store.MessageID, store.Priority = 7, 2
            store.AffectedSOPClassUID, store.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3"
            store.DataSet = BytesIO(b"\0" * 100_000)  # ~7 fragments at a 16 kB PDU
            return threading.Thread(target=assoc.dimse.send_msg, args=(store, 1), name=name)

        threads = [send("first"), send("second")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        assoc.dul.send_pdu = send_pdu
        assoc.release()
    runs = [name for i, name in enumerate(queued) if i == 0 or queued[i - 1] != name]
    assert len(queued) > 4 and sorted(runs) == ["first", "second"], queued


def test_a_finished_association_leaves_no_wake_up_pipe_open(echo_server):
    """Each DUL's pipe is closed when its loop ends, not when the cyclic collector frees the association
    (with the server's settled heap that can be thousands of associations later)."""
    server, _ = echo_server
    port = server.server_address[1]

    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.disable()  # what the collector would free is not what this test is about
    try:
        before = open_descriptors()
        for _ in range(30):
            assoc = _associate(port)
            assert assoc.send_c_echo().Status == 0
            assoc.release()
            assoc.join(10)
        deadline = time.monotonic() + 10
        while open_descriptors() > before + 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # the acceptor's side finishes its loop a moment after the release
        assert open_descriptors() <= before + 4
    finally:
        gc.enable()
