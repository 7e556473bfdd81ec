"""pynetdicom's two reactor threads woken by what they wait for, instead of polling every millisecond.

pynetdicom 3.0 runs two loops per association, each sleeping 1 ms whenever it finds nothing to do: the
DUL thread (socket -> PDUs, and primitives to send -> socket) and the association's reactor (decoded
DIMSE messages -> handlers). A request therefore waits up to ~1 ms at each of three hand-offs on its way
in and out (the DUL reading it, the reactor taking it, the DUL sending the answer); an idle association
wakes 2,000 times a second. Here each loop instead waits until there is something for it, or a short
bound has passed (timers, flags set without a queue: the loops still check them):

- the DUL waits in `select` on its socket and a pipe that a primitive queued for it writes to;
- the association's reactor waits on an Event set when a DIMSE message or a DUL primitive is queued for
  it, or when a requestor pauses it (`_reactor_checkpoint.clear()`).

A DIMSE message goes out as several P-DATA primitives queued one by one. pynetdicom lets two threads
send on one association at once (a handler's response, and a request or event from another thread: it
counts the reactor as paused while a handler runs), and nothing keeps their fragments together; waking
the DUL on each fragment makes the threads switch between fragments, so `install()` also makes each
message's fragments one block (a lock per association around `send_msg`). Without it a peer received
interleaved command and data fragments and aborted ("invalid DIMSE message").

Only the two loops' own idle sleeps change (told apart by their caller's code object); every other
sleep pynetdicom makes is left as it is. `install()` once per process; a pynetdicom whose loops are not
where we expect them is left alone (the check fails closed: it keeps polling).
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time

from pynetdicom import association as _association
from pynetdicom import dimse as _dimse
from pynetdicom import dul as _dul

from workflow.dimse.reactor import count_parked_as_paused

BOUND = 0.01  # seconds a loop may wait without a wake-up before it checks its timers and flags again

_DUL_LOOP = _dul.DULServiceProvider.run_reactor.__code__
_REACTOR_LOOP = _association.Association._run_reactor.__code__


class _DulWaker:
    """A pipe the DUL thread selects on beside its socket; written to when a primitive is queued.
    Closed when the DUL's loop ends (`_run_then_close`): a pipe per finished association would
    otherwise stay open until the cyclic collector frees the association. The lock keeps a late
    wake-up from writing to a closed descriptor, which the process may already have reused."""

    def __init__(self, dul) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._lock = threading.Lock()
        self._closed = False
        for queued in (dul.to_provider_queue, dul.event_queue):
            _on_put(queued, self)

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self.write_fd, b"!")
            except OSError:
                pass  # the pipe is full: a wake-up is pending anyway

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.read_fd)
                os.close(self.write_fd)

    def wait(self, dul, seconds: float) -> None:
        raw = getattr(dul.socket, "socket", None) if dul.socket is not None else None
        if raw is not None and hasattr(raw, "pending") and raw.pending():
            return  # TLS holds decrypted bytes the socket no longer signals
        watched = [self.read_fd] if raw is None else [raw, self.read_fd]
        try:
            select.select(watched, [], [], seconds)
        except (OSError, ValueError):
            time.sleep(seconds)  # the socket was closed under us: the loop finds out itself
        try:
            while os.read(self.read_fd, 512):
                pass
        except OSError:
            pass


class _ReactorWaker:
    """An Event the association's reactor waits on; set when something is queued for it."""

    def __init__(self, assoc) -> None:
        self.ready = threading.Event()
        _on_put(assoc.dimse.msg_queue, self)
        _on_put(assoc.dul.to_user_queue, self)
        checkpoint = assoc._reactor_checkpoint
        clear = checkpoint.clear

        def clear_and_wake() -> None:  # a requestor pausing the reactor waits until it is paused
            clear()
            self.wake()

        checkpoint.clear = clear_and_wake

    def wake(self) -> None:
        self.ready.set()

    def wait(self, seconds: float) -> None:
        self.ready.wait(seconds)
        self.ready.clear()  # before the loop looks at its queues: a put after this sets it again


def _on_put(queued, waker) -> None:
    put = queued.put

    def put_and_wake(item, block=True, timeout=None) -> None:
        put(item, block, timeout)
        waker.wake()

    queued.put = put_and_wake


def _run_then_close(run_reactor):
    """The DUL's thread body, closing its wake-up pipe once the loop has ended."""

    def run(self) -> None:
        try:
            run_reactor(self)
        finally:
            waker = self.__dict__.pop("_wfm_waker", None)
            if waker is not None:
                waker.close()

    return run


class _Clock:
    """Stands in for the `time` module inside pynetdicom's dul and association modules: the two loops'
    idle sleeps become waits for work; anything else goes to `time` unchanged."""

    def __getattr__(self, name: str):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        caller = sys._getframe(1).f_code
        if caller is _DUL_LOOP:
            dul = threading.current_thread()
            if getattr(dul, "state_machine", None) is None or dul.state_machine.current_state == "Sta1":
                return time.sleep(seconds)  # not connected, or closing: stop_dul() waits on this loop
            waker = dul.__dict__.get("_wfm_waker")
            if waker is None:  # the first idle turn: wire up, then look again before waiting
                dul.__dict__["_wfm_waker"] = _DulWaker(dul)
                return None
            return waker.wait(dul, BOUND)
        if caller is _REACTOR_LOOP:
            assoc = threading.current_thread()
            waker = assoc.__dict__.get("_wfm_waker")
            if waker is None:
                assoc.__dict__["_wfm_waker"] = _ReactorWaker(assoc)
                return None
            return waker.wait(BOUND)
        return time.sleep(seconds)


def install() -> None:
    """Make pynetdicom's reactors in this process wait for work instead of polling (once)."""
    if isinstance(_dul.time, _Clock):
        return
    _dul.time = _Clock()
    _association.time = _Clock()
    # DULs made from now on run the wrapped loop (a DUL binds its thread body when it is made).
    _dul.DULServiceProvider.run_reactor = _run_then_close(_dul.DULServiceProvider.run_reactor)
    _dimse.DIMSEServiceProvider.send_msg = _whole(_dimse.DIMSEServiceProvider.send_msg)
    count_parked_as_paused()  # a request sent just after an N-EVENT-REPORT could wait for ever


def _whole(send_msg):
    """`send_msg` queuing all of a message's fragments before another thread's message on the
    association can queue any."""

    def send_whole(self, primitive, context_id):
        lock = self.__dict__.get("_wfm_send_lock") or self.__dict__.setdefault("_wfm_send_lock", threading.Lock())
        with lock:
            return send_msg(self, primitive, context_id)

    return send_whole


def drain(assoc, deadline: float) -> bool:
    """Wait, until `deadline` (a monotonic time), until every message a thread has begun to send on
    `assoc` is on its way: all its fragments queued (`send_whole` holds the lock while it queues them)
    and taken by the DUL, which sends each before it looks at the next primitive. pynetdicom announces
    a message as sent (EVT_DIMSE_SENT) before it queues it, so an A-ABORT queued on that signal can
    overtake the response it was waiting for. True once nothing is left to send."""
    lock = assoc.dimse.__dict__.get("_wfm_send_lock")
    if lock is not None:
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        lock.release()
    queued = assoc.dul.to_provider_queue
    while queued.queue and assoc.dul.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    return not queued.queue
