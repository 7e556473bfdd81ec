"""A local request that reaches pynetdicom's state machine once the association has begun to close is
dropped, instead of ending the DUL thread.

PS3.8 Table 9-10 gives no action for a local P-DATA, A-RELEASE or A-ABORT request in Sta13 (awaiting
transport connection close): the association is already gone. pynetdicom raises InvalidEventError
there, in its DUL thread, which ends on it without ever reaching Sta1: the socket is left open until the
garbage collector finds it, and the peer waits for a close that never comes. No user of an association
can rule this out: it checks `is_established`, then the peer's A-ABORT (or its own, after a DIMSE
timeout) moves the DUL to Sta13 before the request is taken. Seen in every test run as "Invalid event
'Evt11' for the current state 'Sta13'": a holdings query's idle timeout releasing an association its
DIMSE timeout had just aborted. The request is taken off the queue and logged; the DUL goes on to close
the transport (Evt17) or time it out (ARTIM, Evt18) as the table says.
"""

from __future__ import annotations

import logging

from pynetdicom import fsm as _fsm

log = logging.getLogger("workflow.dimse")

CLOSING = "Sta13"
LOCAL_REQUESTS = {"Evt9": "P-DATA", "Evt11": "A-RELEASE request", "Evt14": "A-RELEASE response",
                  "Evt15": "A-ABORT"}


def install() -> None:
    """Once per process."""
    if getattr(_fsm.StateMachine.do_action, "_wfm_closing", False):
        return
    do_action = _fsm.StateMachine.do_action

    def do_action_unless_closing(self, event: str) -> None:
        if (self.current_state == CLOSING and event in LOCAL_REQUESTS
                and (event, CLOSING) not in _fsm.TRANSITION_TABLE):
            self.dul.to_provider_queue.get(block=False)  # the primitive the event stands for
            log.debug("%s dropped: the association with %s is already closing", LOCAL_REQUESTS[event],
                      getattr(self.dul.assoc, "remote", {}).get("ae_title", "?"))
            return
        do_action(self, event)

    do_action_unless_closing._wfm_closing = True  # type: ignore[attr-defined]
    _fsm.StateMachine.do_action = do_action_unless_closing
