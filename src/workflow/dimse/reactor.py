"""pynetdicom 3.0's reactor thread may take a response off the queue instead of the request that waits
for it (pynetdicom issue #875): the request then times out. `hold_reactor` keeps the reactor parked before
a request is sent (the request's generator releases it); `StrayCounter` counts responses it took anyway,
so a lost response is reported, never mistaken for "no matches"."""

from __future__ import annotations

import threading
import time

from pynetdicom.association import Association


def hold_reactor(assoc: Association, limit: float = 1.0) -> None:
    """Block pynetdicom's reactor thread before sending a request, so that it cannot take a response.

    pynetdicom pauses it itself but only checks a flag that is still True just after the reactor left
    its wait; here we wait until the reactor actually waits on the cleared checkpoint (CPython's
    Event keeps its waiters in `_cond._waiters`). The request's generator releases it at the end."""
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)
    if checkpoint is None or waiters is None:
        return  # another pynetdicom: the stray count still catches a lost response
    checkpoint.clear()
    deadline = time.monotonic() + limit
    while not waiters and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0001)


def release_reactor(assoc: Association) -> None:
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is not None:
        checkpoint.set()


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
