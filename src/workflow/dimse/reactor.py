"""pynetdicom 3.0's reactor thread may take a response off the queue instead of the request that waits
for it (pynetdicom issue #875): the request then times out. `hold_reactor` keeps the reactor parked before
a request is sent (the request's generator releases it); `StrayCounter` counts responses it took anyway,
so a lost response is reported, never mistaken for "no matches". `held` holds it for one request and
its responses however they end; `release` ends an association in bounded time. `count_parked_as_paused`
mends a second race of that pause (see there)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pynetdicom.association import Association

log = logging.getLogger("workflow.dimse")
RELEASE_LIMIT = 30.0  # seconds to wait for the reactor to pause when the association has no ACSE timeout


def hold_reactor(assoc: Association, limit: float = 1.0) -> bool:
    """Block pynetdicom's reactor thread before sending a request, so that it cannot take a response.

    pynetdicom pauses it itself but only checks a flag that is still True just after the reactor left
    its wait; here we wait until the reactor actually waits on the cleared checkpoint (CPython's
    Event keeps its waiters in `_cond._waiters`). The request's generator releases it at the end.
    True once the reactor waits there; False if it did not within `limit` or its thread has ended."""
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)
    if checkpoint is None or waiters is None:
        return assoc.is_alive()  # another pynetdicom: the stray count still catches a lost response
    checkpoint.clear()
    deadline = time.monotonic() + limit
    while not waiters and assoc.is_established and assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0001)
    return bool(waiters)


def _reactor_parked(assoc: Association) -> bool:
    """True while the reactor waits at its checkpoint (only its own thread ever waits there)."""
    checkpoint = assoc.__dict__.get("_reactor_checkpoint")
    return bool(getattr(getattr(checkpoint, "_cond", None), "_waiters", None))


def count_parked_as_paused() -> None:
    """Make `Association._is_paused` also true while the reactor is parked at its checkpoint.

    pynetdicom serves an N-EVENT-REPORT sent to a requestor in a thread of its own, which sets the flag
    True while its handler runs and False once it has answered, whatever the reactor does meanwhile. A
    request sent just after such an event (its caller woken by the handler) clears the checkpoint and
    waits for the flag; if the reactor parked (setting it True) before the event's thread set it False,
    the flag stays False and the request waits for ever, in a loop without a timeout. It hung a CI run:
    an Inventory C-FIND sent right after the event that ended production. Once per process."""
    if isinstance(Association.__dict__.get("_is_paused"), property):
        return

    def get(self) -> bool:
        return self.__dict__.get("_is_paused", False) or _reactor_parked(self)

    def set_(self, value: bool) -> None:
        self.__dict__["_is_paused"] = value

    Association._is_paused = property(get, set_)


def release_reactor(assoc: Association) -> None:
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is not None:
        checkpoint.set()


@contextmanager
def held(assoc: Association) -> Iterator[None]:
    """The reactor held for one request and its responses, and let go however they end: a request
    refused (RuntimeError) or abandoned part-way (an error while reading its responses) would otherwise
    leave the reactor parked, and the peer's next request on the association unanswered."""
    hold_reactor(assoc)
    try:
        yield
    finally:
        release_reactor(assoc)


def release(assoc: Association | None) -> None:
    """A-RELEASE an association that may already be gone, in bounded time.

    pynetdicom's `release()` first waits, without a limit, until the reactor counts as paused, which it
    does only while it waits at its checkpoint or runs a handler. A reactor thread that has ended
    between two turns of its loop, while the association still counts as established, keeps it
    waiting for ever: a reconciliation run once hung so in CI, releasing an Inventory Creation
    association. Here we wait for the reactor to park, for at most the association's ACSE timeout; past
    it (a handler that does not return), or with no reactor left, the association is aborted instead,
    and a warning says why."""
    if assoc is None or not assoc.is_established:
        return
    limit = assoc.acse_timeout or RELEASE_LIMIT
    if hold_reactor(assoc, limit):
        try:  # what pynetdicom's release() does once its reactor is paused, without its unbounded wait
            assoc.acse.negotiate_release()  # bounded by the ACSE timeout; aborts if no answer comes
        finally:
            release_reactor(assoc)
        return
    if not assoc.is_established:
        release_reactor(assoc)
        return  # ended on its own meanwhile (the peer released or aborted it)
    reason = ("its reactor thread has ended" if not assoc.is_alive()
              else f"its reactor did not pause within {limit:g} s")
    log.warning("aborting the association with %s instead of releasing it: %s",
                assoc.remote.get("ae_title", "?"), reason)
    release_reactor(assoc)
    assoc.abort()


class StrayCounter:
    """Counts responses pynetdicom's reactor took off the queue instead of the request (issue #875)."""

    def __init__(self, assoc: Association) -> None:
        self.count = 0
        serve = assoc._serve_request

        def counting(msg, context_id):
            if not msg.is_valid_request:
                self.count += 1
            serve(msg, context_id)

        assoc._serve_request = counting


def guard(assoc: Association) -> Association:
    """Leave responses to the request that waits for them: a requestor's reactor (pynetdicom runs it in
    the Association's own thread) is handed only requests (an N-EVENT-REPORT to a subscriber), never a
    response. Costs nothing per request, unlike `hold_reactor`. Without it a quick response is now and
    then taken and dropped by the reactor and the request returns an empty Dataset: the event sender
    counted a delivered event as failed and sent it again; a tool or test saw no answer."""
    dimse = assoc.dimse
    take = dimse.get_msg

    def get_msg(block: bool = False):
        if threading.current_thread() is assoc:
            _, msg = dimse.peek_msg()
            if msg is not None and not msg.is_valid_request:
                return None, None
        return take(block)

    dimse.get_msg = get_msg
    return assoc
