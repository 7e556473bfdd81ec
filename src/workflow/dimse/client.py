"""What every SCU tool shares (`wfm ian send`, `wfm ups ...`, `wfm mpps send`, the demo): the peer to
call, an association whose failure says why ("connection refused", "rejected", ...), and each
response as a status with its standard meaning."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt, status as standard_statuses
from pynetdicom.dul import DULServiceProvider

from workflow.dimse import event_driven
from workflow.dimse import response_fields  # noqa: F401  (Attribute Identifier List in N-CREATE-RSP)
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release

log = logging.getLogger("workflow.scu")

TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class AssociationFailed(ConnectionError):
    """No association, or the peer does not offer the service asked for; the message says why."""


@dataclass(frozen=True)
class Peer:
    """The SCP a tool talks to, and who we say we are."""

    host: str = "127.0.0.1"
    port: int = 11112
    called_ae: str = "WFM"
    calling_ae: str = "WFMSCU"
    timeout: float = 30.0

    def __str__(self) -> str:
        return f"{self.called_ae} at {self.host}:{self.port}"


def associate(ae: NoDelayAE, host: str, port: int, called_ae: str):
    """An established association to `called_ae` at host:port, or AssociationFailed saying why, as an
    operator needs to read it: nothing listening at the address, the peer rejecting us (and its reason),
    the peer accepting none of the proposed SOP classes, or an abort."""
    event_driven.install()  # the tool's requests go out without waiting for pynetdicom's next poll
    seen: dict[str, object] = {}

    def on_acse(event) -> None:  # the A-ASSOCIATE response, for its result, source and reason
        seen["response"] = event.primitive

    handlers = [(evt.EVT_CONN_OPEN, lambda event: seen.setdefault("open", True)),
                (evt.EVT_ACCEPTED, lambda event: seen.setdefault("accepted", True)),
                (evt.EVT_ACSE_RECV, on_acse)]
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=handlers)
    except OSError as exc:
        raise AssociationFailed(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    if assoc.is_established:
        return assoc
    where = f"{called_ae} at {host}:{port}"
    if "open" not in seen:
        raise AssociationFailed(f"connection refused: nothing accepts connections at {host}:{port} "
                                "(is the server running, and is that its port?)")
    if assoc.is_rejected:
        reason = getattr(seen.get("response"), "reason_str", None) or "no reason given"
        raise AssociationFailed(f"association rejected by {where}: {reason} (is the called AE title right, "
                                "and is our calling AE title allowed?)")
    if "accepted" in seen:
        raise AssociationFailed(f"{where} accepted none of the proposed SOP classes")
    raise AssociationFailed(f"association with {where} aborted before it was established")


@contextmanager
def association(peer: Peer, abstract_syntaxes: Iterable[str]) -> Iterator:
    """An established association proposing each abstract syntax with Explicit and Implicit VR LE;
    released on exit. Raises AssociationFailed naming the peer and the reason."""
    ae = NoDelayAE(ae_title=peer.calling_ae)
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid, TRANSFER_SYNTAXES)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout
    assoc = associate(ae, peer.host, peer.port, peer.called_ae)
    try:
        yield assoc
    finally:
        release(assoc)


class Client:
    """One association to an SCP for a tool's requests; a subclass names the SOP classes it proposes."""

    abstract_syntaxes: tuple[str, ...] = ()

    def __init__(self, assoc, peer: Peer) -> None:
        self.assoc = assoc
        self.peer = peer

    @classmethod
    @contextmanager
    def open(cls, peer: Peer) -> Iterator:
        with association(peer, cls.abstract_syntaxes) as assoc:
            yield cls(assoc, peer)


def require(assoc, abstract_syntax: str, name: str, peer: Peer) -> None:
    """Raise AssociationFailed unless the peer accepted a presentation context for the service."""
    if not any(c.abstract_syntax == abstract_syntax for c in assoc.accepted_contexts):
        raise AssociationFailed(f"{peer} does not accept {name} ({abstract_syntax})")


@dataclass(frozen=True)
class Reply:
    """One response: its status (None when none came), Error Comment, and data set if any."""

    status: int | None
    comment: str | None = None
    dataset: Dataset | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and standard_statuses.code_to_category(self.status) in ("Success", "Warning")

    def __str__(self) -> str:
        if self.status is None:
            return "no response (association aborted or timed out)"
        category, meaning = _meaning(self.status)
        text = f"0x{self.status:04X} {category}" + (f": {meaning}" if meaning and meaning != category else "")
        return text + (f" ({self.comment})" if self.comment else "")


def reply(status: Dataset | None, dataset: Dataset | None = None) -> Reply:
    """The Reply of a pynetdicom send_* result."""
    if not status or "Status" not in status:
        return Reply(None)
    return Reply(int(status.Status), status.get("ErrorComment"), dataset)


_STATUS_TABLES = (standard_statuses.GENERAL_STATUS, standard_statuses.UNIFIED_PROCEDURE_STEP_SERVICE_CLASS_STATUS,
                  standard_statuses.PROCEDURE_STEP_STATUS)


def _meaning(code: int) -> tuple[str, str]:
    for table in _STATUS_TABLES:
        if code in table:
            return table[code]
    return standard_statuses.code_to_category(code), ""


@dataclass(frozen=True)
class Step:
    """One request a tool sent and its reply: a command's per-request status line."""

    request: str
    answer: Reply

    def __str__(self) -> str:
        return f"{self.request}: {self.answer}"


def logged(step: Step, peer: Peer, sop_class: str, sop_instance: str | None) -> Step:
    """Log one request's outcome with its DICOM context (INFO: a tool prints it to its user anyway), and
    return it."""
    answer = step.answer
    log.info(str(step),
             extra={"called_ae": peer.called_ae, "calling_ae": peer.calling_ae, "sop_class": sop_class,
                    "sop_instance": sop_instance, "status": None if answer.status is None else f"{answer.status:04X}"})
    return step


def end_stray_dul_threads() -> None:
    """End every DICOM upper layer thread still running: after a Ctrl-C that interrupted an association
    half-way (while associating or releasing), its DUL thread loops on with no association to stop it,
    and pynetdicom makes it a non-daemon thread, which keeps the process from exiting."""
    for thread in threading.enumerate():
        if isinstance(thread, DULServiceProvider) and thread.is_alive():
            thread.kill_dul()
