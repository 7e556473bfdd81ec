"""Requests pynetdicom would leave unanswered, answered: the peer gets a status or an A-ABORT at once,
not a wait until its own timeout.

pynetdicom drops a request that lacks a command element PS3.7 requires (a warning, no response) and
fails inside its service class, with a traceback and no response, on an operation the SOP class does
not have (N-DELETE of a workitem, C-STORE on a UPS context, an N-EVENT-REPORT sent to an SCP). Here:
- a request missing a required command element is logged and its association aborted (PS3.8: a
  request that cannot be parsed as one; without it there may be no Message ID to answer);
- an operation this server never serves is answered 0211 (Unrecognized Operation, PS3.7 C.5.4)."""

from __future__ import annotations

import logging

from pynetdicom import dimse_primitives as prim
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

log = logging.getLogger("workflow.dimse")

UNRECOGNIZED_OPERATION = 0x0211
NEVER_SERVED = (prim.N_DELETE, prim.N_EVENT_REPORT)


def answer_unserved(event) -> None:
    """EVT_ESTABLISHED (an association we accepted): check each request before pynetdicom serves it."""
    assoc = event.assoc
    serve = assoc._serve_request

    def checked(msg, context_id: int) -> None:
        if not msg.is_valid_request:
            log.warning(f"{msg.msg_type} request without a command element PS3.7 requires; association aborted",
                        extra={"calling_ae": assoc.requestor.ae_title})
            assoc.abort()
            return
        if isinstance(msg, NEVER_SERVED) or (isinstance(msg, prim.C_STORE) and not _storage(msg)):
            _unrecognized(assoc, msg, context_id)
            return
        serve(msg, context_id)

    assoc._serve_request = checked


def _storage(msg: prim.C_STORE) -> bool:
    return issubclass(uid_to_service_class(str(msg.AffectedSOPClassUID)), StorageServiceClass)


def _unrecognized(assoc, msg, context_id: int) -> None:
    sop_class = getattr(msg, "AffectedSOPClassUID", None) or getattr(msg, "RequestedSOPClassUID", None)
    sop_instance = getattr(msg, "AffectedSOPInstanceUID", None) or getattr(msg, "RequestedSOPInstanceUID", None)
    log.warning(f"{msg.msg_type} is not an operation this server serves for {sop_class}; answered 0211",
                extra={"calling_ae": assoc.requestor.ae_title, "sop_class": str(sop_class),
                       "sop_instance": str(sop_instance or ""), "status": f"{UNRECOGNIZED_OPERATION:04X}"})
    rsp = type(msg)()
    rsp.MessageIDBeingRespondedTo = msg.MessageID
    rsp.AffectedSOPClassUID = sop_class
    if sop_instance:
        rsp.AffectedSOPInstanceUID = sop_instance
    if isinstance(msg, prim.N_EVENT_REPORT):
        rsp.EventTypeID = msg.EventTypeID
    rsp.Status = UNRECOGNIZED_OPERATION
    assoc.dimse.send_msg(rsp, context_id)
