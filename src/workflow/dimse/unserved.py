"""Requests pynetdicom would leave unanswered, answered: the peer gets a status or an A-ABORT at once,
not a wait until its own timeout.

pynetdicom drops a request that lacks a command element PS3.7 requires (a warning, no response) and
fails inside its service class, with a traceback and no response, on an operation the SOP class does
not have (N-DELETE of a workitem, C-STORE on a UPS context, an N-EVENT-REPORT sent to an SCP). Here:
- a request missing a required command element is logged and its association aborted (PS3.8: a
  request that cannot be parsed as one; without it there may be no Message ID to answer);
- an operation this server never serves is answered 0211 (Unrecognized Operation, PS3.7 C.5.4);
- a request whose SOP Instance UID pynetdicom's decoder refuses (over 64 characters, PS3.5 9.1) is
  answered 0117 (Invalid SOP Instance, PS3.7 Annex C.4.2). pynetdicom refused to build such a request
  (an error with a traceback of its own) and aborted the association; `tolerate_invalid_instance_uids`
  builds it with the UID marked instead. (A UID of up to 64 characters that breaks the construction
  rules reaches the services, as before: their N-CREATE answers 0106, other requests find no such
  instance.);
- a request sent on a presentation context negotiated for another SOP class is answered 0118 (No such
  SOP Class: DIMSE-N) or 0122 (SOP Class not supported: DIMSE-C), the association going on. pynetdicom
  serves a request by the SOP Class UID in its command, whatever its context: an IAN sent on an MPPS
  context was stored as an IAN, and a SOP class it does not know aborted the association with an error.
  Which contexts may carry a request is the routes' to say (UPS requests carry the Push UID on any UPS
  context, PS3.4 CC.3.1.1)."""

from __future__ import annotations

import logging
from typing import Callable

from pydicom.multival import MultiValue
from pydicom.uid import UID
from pynetdicom import _config
from pynetdicom import dimse_primitives as prim
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

log = logging.getLogger("workflow.dimse")

UNRECOGNIZED_OPERATION = 0x0211
INVALID_SOP_INSTANCE = 0x0117
NO_SUCH_SOP_CLASS, SOP_CLASS_NOT_SUPPORTED = 0x0118, 0x0122  # PS3.7 C.5: DIMSE-N and DIMSE-C
NEVER_SERVED = (prim.N_DELETE, prim.N_EVENT_REPORT)
# Command elements holding a SOP Instance UID -> where a primitive keeps it (set without validation).
_INSTANCE_UIDS = {0x00001000: ("Affected SOP Instance UID", "_affected_sop_instance_uid"),
                  0x00001001: ("Requested SOP Instance UID", "_requested_sop_instance_uid")}


def answer_unserved(served_on: Callable[[str, str], bool]) -> Callable:
    """The EVT_ESTABLISHED handler (an association we accepted) that checks each request before
    pynetdicom serves it. `served_on(sop_class, abstract_syntax)`: may a context for that abstract syntax
    carry a request for that SOP class."""

    def established(event) -> None:
        assoc = event.assoc
        serve = assoc._serve_request

        def checked(msg, context_id: int) -> None:
            if not msg.is_valid_request:
                log.warning(f"{msg.msg_type} request without a command element PS3.7 requires; association "
                            "aborted", extra={"calling_ae": assoc.requestor.ae_title})
                assoc.abort()
                return
            invalid = getattr(msg, "_wfm_invalid_uid", None)
            if invalid is not None:
                _answer(assoc, msg, context_id, INVALID_SOP_INSTANCE, f"{msg.msg_type} whose {invalid}; answered 0117")
                return
            sop_class = _sop_class(msg)
            if isinstance(msg, NEVER_SERVED) or (isinstance(msg, prim.C_STORE) and not _storage(msg)):
                _answer(assoc, msg, context_id, UNRECOGNIZED_OPERATION,
                        f"{msg.msg_type} is not an operation this server serves for {sop_class}; answered 0211")
                return
            context = assoc._accepted_cx.get(context_id)  # None: pynetdicom aborts, as PS3.8 asks
            if context is not None and not served_on(str(sop_class), str(context.abstract_syntax)):
                status = NO_SUCH_SOP_CLASS if msg.msg_type.startswith("N-") else SOP_CLASS_NOT_SUPPORTED
                _answer(assoc, msg, context_id, status,
                        f"refused ({status:04X}): {msg.msg_type} of {_named(sop_class)} on a presentation context "
                        f"for {_named(context.abstract_syntax)}",
                        comment="SOP Class not negotiated on this presentation context")
                return
            serve(msg, context_id)

        assoc._serve_request = checked

    return established


def _sop_class(msg) -> UID | None:
    return getattr(msg, "AffectedSOPClassUID", None) or getattr(msg, "RequestedSOPClassUID", None)


def sop_instance_of(msg) -> UID | None:
    """A request's Affected or Requested SOP Instance UID."""
    return getattr(msg, "AffectedSOPInstanceUID", None) or getattr(msg, "RequestedSOPInstanceUID", None)


def _named(uid) -> str:
    """A SOP class by its name where pydicom's dictionary has one (its UID otherwise)."""
    uid = UID(str(uid or ""))
    return f"{uid.name} ({uid})" if uid.name != uid else str(uid)


def _storage(msg: prim.C_STORE) -> bool:
    return issubclass(uid_to_service_class(str(msg.AffectedSOPClassUID)), StorageServiceClass)


def _answer(assoc, msg, context_id: int, status: int, why: str, comment: str | None = None) -> None:
    """Answer `msg` with `status` (and an Error Comment), logged with `why`. A SOP Instance UID that
    breaks the rules is not sent back (pynetdicom would refuse to encode it)."""
    sop_class = _sop_class(msg)
    sop_instance = sop_instance_of(msg)
    log.warning(why, extra={"calling_ae": assoc.requestor.ae_title, "sop_class": str(sop_class),
                            "sop_instance": str(sop_instance or ""), "status": f"{status:04X}"})
    rsp = type(msg)()
    rsp.MessageIDBeingRespondedTo = msg.MessageID
    rsp.AffectedSOPClassUID = sop_class
    if sop_instance and status != INVALID_SOP_INSTANCE:
        rsp.AffectedSOPInstanceUID = sop_instance
    if isinstance(msg, prim.N_EVENT_REPORT):
        rsp.EventTypeID = msg.EventTypeID
    if isinstance(msg, prim.N_ACTION):
        rsp.ActionTypeID = msg.ActionTypeID
    rsp.Status = status
    if comment:
        rsp.ErrorComment = comment
    assoc.dimse.send_msg(rsp, context_id)


def tolerate_invalid_instance_uids() -> None:
    """Build requests whose SOP Instance UID breaks the UID rules, the UID kept as it came and the request
    marked (`_wfm_invalid_uid`) for `answer_unserved` to answer 0117 (once per process)."""
    build = DIMSEMessage.message_to_primitive
    if getattr(build, "_wfm_tolerant", False):
        return

    def message_to_primitive(self):
        if not type(self).__name__.endswith("_RQ"):
            return build(self)  # a response from a peer: pynetdicom's own checks
        invalid = {}
        for tag, (name, attribute) in _INSTANCE_UIDS.items():
            if tag not in self.command_set:
                continue
            value = self.command_set[tag].value
            text = "\\".join(value) if isinstance(value, MultiValue) else str(value or "")
            valid, reason = _config.VALIDATORS["UI"](UID(text))
            if text and not valid:
                invalid[attribute] = (name, text, reason)
                del self.command_set[tag]
        primitive = build(self)
        for attribute, (name, text, reason) in invalid.items():
            setattr(primitive, attribute, UID(text))
            primitive._wfm_invalid_uid = f"{name} {text!r} is not a valid UID ({reason})"
        return primitive

    message_to_primitive._wfm_tolerant = True
    DIMSEMessage.message_to_primitive = message_to_primitive
