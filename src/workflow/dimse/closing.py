"""A local request that reaches pynetdicom's state machine once the association has begun to end is
dropped, instead of ending the DUL thread.

PS3.8 Table 9-10 gives no action for some local requests while an association ends: a P-DATA or a
second A-RELEASE request once ours is sent (Sta7, awaiting A-RELEASE-RP), any P-DATA, A-RELEASE or
A-ABORT request in Sta13 (awaiting transport connection close). pynetdicom raises InvalidEventError
there, in its DUL thread, which ends on it without ever reaching Sta1: the socket is left open until
the garbage collector finds it, and the peer waits for a close that never comes. No user of an
association can rule this out: a thread checks `is_established`, or answers a request it has just
read, and meanwhile the release or an abort moves the DUL on. Seen in test runs as "Invalid event
'Evt11' for the current state 'Sta13'" (a holdings query's idle timeout releasing an association its
DIMSE timeout had just aborted) and "'Evt9' for 'Sta7'" (a response to the archive's request queued
just after our A-RELEASE-RQ). The request is taken off the queue and logged; the DUL goes on as the
table says (the A-RELEASE-RP, the transport closing, the ARTIM timer). A local request the table lacks
in any other state is dropped too, with a warning: it would have ended the thread all the same.
"""

from __future__ import annotations

import logging

from pynetdicom import fsm as _fsm

log = logging.getLogger("workflow.dimse")

ENDING = frozenset(("Sta1", "Sta7", "Sta9", "Sta10", "Sta11", "Sta12", "Sta13"))  # released, aborted or on the way
LOCAL_REQUESTS = {"Evt9": "P-DATA", "Evt11": "A-RELEASE request", "Evt14": "A-RELEASE response",
                  "Evt15": "A-ABORT"}


def install() -> None:
    """Once per process."""
    if getattr(_fsm.StateMachine.do_action, "_wfm_closing", False):
        return
    do_action = _fsm.StateMachine.do_action

    def do_action_unless_ending(self, event: str) -> None:
        state = self.current_state
        if event in LOCAL_REQUESTS and (event, state) not in _fsm.TRANSITION_TABLE:
            self.dul.to_provider_queue.get(block=False)  # the primitive the event stands for
            peer = getattr(self.dul.assoc, "remote", {}).get("ae_title", "?")
            (log.debug if state in ENDING else log.warning)(
                "%s dropped in %s: the association with %s is ending", LOCAL_REQUESTS[event], state, peer)
            return
        do_action(self, event)

    do_action_unless_ending._wfm_closing = True  # type: ignore[attr-defined]
    _fsm.StateMachine.do_action = do_action_unless_ending
