"""A DIMSE request sent as built, its responses taken off the queue by the test itself (the
association's reactor paused): what a peer gets back, or that it got nothing."""

from __future__ import annotations

import time


def send_raw(assoc, request, sop_class: str, timeout: float = 20.0) -> list:
    """Send a request whose data set is bytes as given; every response, the final one last."""
    context = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == sop_class)
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    responses = []
    try:
        assoc.dimse.send_msg(request, context)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, response = assoc.dimse.get_msg(block=False)
            if response is not None:
                responses.append(response)
                if int(response.Status) not in (0xFF00, 0xFF01):
                    return responses
            elif assoc.is_aborted or not assoc.dul.is_alive():
                break
            else:
                time.sleep(0.005)
    finally:
        assoc._reactor_checkpoint.set()
    raise AssertionError(f"no final response (got {[int(r.Status) for r in responses]})")
