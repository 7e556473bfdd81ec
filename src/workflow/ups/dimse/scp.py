"""UPS SCP handlers (PS3.4 Annex CC): N-CREATE, N-GET, N-SET, N-ACTION (change state, request cancel,
subscribe, unsubscribe, suspend) and C-FIND, each mapped to one WorklistService call.

N-* requests carry the Push SOP Class UID whatever context they arrive on (CC.3.1.1); they are
accepted on any UPS context. One log line per request names the calling AE, SOP class, SOP
instance, status and outcome.
"""

from __future__ import annotations

import logging
import time


from workflow.dimse.datasets import request_json, status_dataset, to_dataset
from workflow.dimse.dicom_json import DecodeError
from workflow.dimse.handling import answer, context, decode, log_outcome, n_create, n_set
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.kernel import statuses
from workflow.kernel.statuses import Status
from workflow.ups.rules.matching import IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, QueryRejected
from workflow.ups.rules.state import UPS_PUSH_SOP_CLASS_UID
from workflow.kernel.outcome import Outcome
from workflow.ups.worklist import WorklistService

log = logging.getLogger("workflow.ups")

PUSH = UPS_PUSH_SOP_CLASS_UID
WATCH = "1.2.840.10008.5.1.4.34.6.2"
PULL = "1.2.840.10008.5.1.4.34.6.3"
EVENT = "1.2.840.10008.5.1.4.34.6.4"
QUERY = "1.2.840.10008.5.1.4.34.6.5"
UPS_CLASSES = {PUSH: "Push", WATCH: "Watch", PULL: "Pull", EVENT: "Event", QUERY: "Query"}
FIND_CLASSES = (PULL, WATCH, QUERY)

SERVICES = (
    ServiceSpec("Unified Procedure Step - Push", PUSH, "SCP", "N-CREATE, N-GET, N-ACTION (request cancel)"),
    ServiceSpec("Unified Procedure Step - Pull", PULL, "SCP", "C-FIND, N-GET, N-SET, N-ACTION (change state)"),
    ServiceSpec("Unified Procedure Step - Watch", WATCH, "SCP",
                "N-ACTION (subscribe, unsubscribe, suspend, request cancel), N-GET, C-FIND"),
    ServiceSpec("Unified Procedure Step - Query", QUERY, "SCP", "C-FIND"),
)

CHANGE_STATE, REQUEST_CANCEL, SUBSCRIBE, UNSUBSCRIBE, SUSPEND = 1, 2, 3, 4, 5
NO_SUCH_ACTION = Status(0x0123, "Failure", "No such action")


class UpsScp:
    def __init__(self, worklist: WorklistService) -> None:
        self.worklist = worklist

    def routes(self) -> Routes:
        return Routes(offers=SERVICES, n_create={PUSH: self.n_create}, n_get={PUSH: self.n_get},
                      n_set={PUSH: self.n_set}, n_action={PUSH: self.n_action},
                      c_find={uid: self.c_find for uid in FIND_CLASSES},
                      carried_on={PUSH: frozenset(UPS_CLASSES) - {PUSH}})

    # Each handler: decode, call the service once, answer (which logs and builds the status).

    def n_create(self, event):
        return n_create(log, event, "UPS N-CREATE", self.worklist.create)

    def n_get(self, event):
        started = time.perf_counter()
        uid = str(event.request.RequestedSOPInstanceUID)
        requested = event.request.AttributeIdentifierList or []
        tags = [f"{int(t):08X}" for t in (requested if isinstance(requested, list) else [requested])]
        outcome = self.worklist.get(uid, tags)
        return answer(log, event, "UPS N-GET", outcome, started, uid), to_dataset(outcome.dataset, event.context)

    def n_set(self, event):
        return n_set(log, event, "UPS N-SET", self.worklist.set)

    def n_action(self, event):
        started = time.perf_counter()
        uid = str(event.request.RequestedSOPInstanceUID)
        action = event.request.ActionTypeID
        info, failure = decode(event.request.ActionInformation, event)
        info = info or {}
        if failure is None:
            calling = event.assoc.requestor.ae_title
            failure = {
                CHANGE_STATE: lambda: self.worklist.change_state(uid, info),
                REQUEST_CANCEL: lambda: self.worklist.request_cancel(uid, info, calling),
                SUBSCRIBE: lambda: self.worklist.subscribe(uid, info),
                UNSUBSCRIBE: lambda: self.worklist.unsubscribe(uid, info),
                SUSPEND: lambda: self.worklist.suspend(uid, info),
            }.get(action, lambda: Outcome(NO_SUCH_ACTION, comment=f"no action type {action}"))()
        return answer(log, event, f"UPS N-ACTION {action}", failure, started, uid), None

    def c_find(self, event):
        started = time.perf_counter()
        try:
            identifier = request_json(event.request.Identifier, event)
        except DecodeError as exc:
            # An Identifier that is no data set does not match the SOP Class: A900 (Table CC.2.8-2; 0110
            # is no C-FIND status, Cxxx is left for failures of the SCP itself).
            failure = Outcome(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=f"undecodable identifier: {exc}")
            yield answer(log, event, "UPS C-FIND", failure, started, None), None
            return
        matches = 0
        cancel = _CancelFlag(event)
        try:
            for match in self.worklist.find(identifier or {}, cancel, sop_class=str(event.context.abstract_syntax)):
                matches += 1
                yield 0xFF00, to_dataset(match, event.context)
                if matches % DRAIN_EVERY == 0:
                    _drain(event)
        except QueryRejected as exc:
            yield answer(log, event, "UPS C-FIND", Outcome(exc.status, comment=exc.comment), started, None), None
            return
        except Exception:  # noqa: BLE001 - answer, log, keep serving
            log.exception("C-FIND failed", extra=context(event, None))
            yield status_dataset(statuses.Status(0xC000, "Failure", "Unable to process"), "query failed"), None
            return
        if cancel():
            log_outcome(log, event, "UPS C-FIND", Status(0xFE00, "Cancel", "Matching terminated due to Cancel"), started, None,
                 f"cancelled after {matches} matches")
            yield 0xFE00, None
            return
        log_outcome(log, event, "UPS C-FIND", statuses.SUCCESS, started, None, f"{matches} matches")


# pynetdicom's DUL reads from the peer only when it has nothing left to send: a search that queues
# responses faster than they go out would never see a C-CANCEL, and would hold every response in
# memory. Every DRAIN_EVERY matches the handler waits for the queue to empty.
DRAIN_EVERY = 20


def _drain(event, timeout: float = 10.0) -> None:
    outgoing = event.assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while not outgoing.empty() and event.assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0005)


class _CancelFlag:
    """pynetdicom forgets a C-CANCEL once `event.is_cancelled` has reported it: remember it."""

    def __init__(self, event) -> None:
        self.event = event
        self.seen = False

    def __call__(self) -> bool:
        self.seen = self.seen or self.event.is_cancelled
        return self.seen
