"""Who may associate, and with which presentation contexts (`[[client_ae]]`, PS3.15 rights): an ACSE that
refuses a calling AE not listed, coming from a host not allowed, or presenting (over TLS) another
certificate subject; that holds each calling AE and each address to its number of associations; and
that rejects (result 1, user rejection) the presentation contexts of SOP classes the AE has no right to.
Per-request rights (0124) are the server's routing's (dimse/server.py)."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time

from pynetdicom import evt
from pynetdicom.acse import ACSE
from pynetdicom.transport import RequestHandler

from workflow.rights import ALL_RIGHTS, Right, context_allowed, parse_rights
from workflow.config import Settings
from workflow.tls import subject_text

log = logging.getLogger("workflow.dimse")

REJECT_PERMANENT, REJECT_TRANSIENT = 0x01, 0x02
NOT_RECOGNIZED = (REJECT_PERMANENT, 0x01, 0x03)  # calling AE title not recognized
NO_REASON = (REJECT_PERMANENT, 0x01, 0x01)
LOCAL_LIMIT = (REJECT_TRANSIENT, 0x03, 0x02)  # local limit exceeded
USER_REJECTION = 0x01


class Admission:
    """The association policy from the settings. Without `[[client_ae]]` the legacy allow-list
    (`allowed_calling_aes`, all rights) applies; with neither, any calling AE has every right."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = {c.ae_title: c for c in settings.client_ae}
        self._rights = {c.ae_title: parse_rights(",".join(c.rights)) for c in settings.client_ae}
        self.legacy = set(settings.allowed_calling_aes)
        self._lock = threading.Lock()
        self._admitted: dict = {}  # association -> (calling AE, address), until it is seen to have ended

    @property
    def open(self) -> bool:
        return not self.clients and not self.legacy

    def rights_of(self, calling_ae: str) -> frozenset[Right] | None:
        """The calling AE's rights; None when it may not associate at all."""
        calling_ae = calling_ae.strip()
        if self.clients:
            return self._rights.get(calling_ae)
        if self.legacy:
            return ALL_RIGHTS if calling_ae in self.legacy else None
        return ALL_RIGHTS

    def refusal(self, calling_ae: str, address: str, subject: str | None) -> tuple[tuple[int, int, int], str] | None:
        """(A-ASSOCIATE-RJ result/source/reason, why) when the association must be refused, else None.
        `subject`: the client certificate's subject over TLS (None on a plain connection)."""
        calling_ae = calling_ae.strip()
        if self.rights_of(calling_ae) is None:
            return NOT_RECOGNIZED, f"calling AE title {calling_ae!r} is not listed"
        client = self.clients.get(calling_ae)
        if client and client.hosts and not _in(address, client.hosts):
            return NO_REASON, f"{calling_ae} may not connect from {address} (hosts: {', '.join(client.hosts)})"
        if client and client.certificate_subject and subject is not None and subject != client.certificate_subject:
            return NO_REASON, (f"{calling_ae}'s certificate subject {subject or '(none)'!r} is not "
                               f"{client.certificate_subject!r}")
        return None

    def take(self, assoc, calling_ae: str, address: str) -> tuple[tuple[int, int, int], str] | None:
        """(A-ASSOCIATE-RJ, why) when the calling AE or the address already has its number of associations;
        else None, and `assoc` counts from now on until it ends. Counted are the associations admitted
        here, under one lock: one still negotiating is counted once admitted (simultaneous requests
        cannot all find room for one more) and one refused never is (it held a place while it closed)."""
        s = self.settings
        with self._lock:
            self._admitted = {a: who for a, who in self._admitted.items() if _still_open(a)}
            held = self._admitted.values()
            if sum(1 for _, at in held if at == address) >= s.max_associations_per_address:
                return LOCAL_LIMIT, f"{address} has {s.max_associations_per_address} associations open already"
            if sum(1 for ae, _ in held if ae == calling_ae) >= s.max_associations_per_ae:
                return LOCAL_LIMIT, f"{calling_ae} has {s.max_associations_per_ae} associations open already"
            self._admitted[assoc] = (calling_ae, address)
            return None


def _still_open(assoc) -> bool:
    return assoc.is_alive() and not (assoc.is_released or assoc.is_aborted or assoc.is_rejected)


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


class AdmissionACSE(ACSE):
    """pynetdicom's ACSE with the admission policy and the association limits applied first."""

    def __init__(self, assoc, admission: Admission) -> None:
        super().__init__(assoc)
        self.admission = admission

    def _negotiate_as_acceptor(self) -> None:
        request = self.requestor.primitive
        calling = str(request.calling_ae_title).strip()
        address = str(self.assoc.requestor.address)
        refused = self.admission.refusal(calling, address, _peer_subject(self.assoc))
        if refused is None:
            refused = self.admission.take(self.assoc, calling, address)
        if refused is not None:
            (result, source, reason), why = refused
            self.requestor.ae_title = calling
            self.assoc.refusal = why
            self.send_reject(result, source, reason)
            evt.trigger(self.assoc, evt.EVT_REJECTED, {})
            self.assoc.kill()
            return
        super()._negotiate_as_acceptor()

    def send_accept(self) -> None:
        """Before the A-ASSOCIATE-AC goes: the contexts of SOP classes the calling AE may not use at all
        are rejected with result 1 (user rejection)."""
        held = self.admission.rights_of(self.requestor.ae_title) or frozenset()
        accepted = self.assoc._accepted_cx
        for context_id, context in list(accepted.items()):
            if not context_allowed(held, str(context.abstract_syntax)):
                context.result = USER_REJECTION
                del accepted[context_id]
                self.assoc._rejected_cx.append(context)
        super().send_accept()


def _peer_subject(assoc) -> str | None:
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None or not hasattr(sock, "getpeercert"):
        return None  # a plain connection
    return subject_text(sock.getpeercert())


class AdmissionRequestHandler(RequestHandler):
    """pynetdicom's request handler whose associations negotiate through AdmissionACSE."""

    def _create_association(self):
        assoc = super()._create_association()
        assoc.acse = AdmissionACSE(assoc, self.server.admission)
        assoc.dul.receive_pdu = _until_closed(assoc.dul)
        return assoc


def _closed(dul) -> bool:
    """The peer's connection is gone: the DUL thread, started before this wait begins, has ended (it
    ends once the transport closes). Not the DUL's state: idle (Sta1) is also where it starts."""
    return not dul.is_alive()


def _until_closed(dul):
    """The DUL's receive_pdu, except that a wait for the A-ASSOCIATE-RQ ends as soon as the peer's
    connection is gone (pynetdicom waits out the whole ARTIM timeout, holding the slot, after a peer
    sent garbage and hung up)."""
    receive = dul.receive_pdu

    def receive_pdu(wait: bool = False, timeout: float | None = None):
        if not wait or timeout is None:
            return receive(wait, timeout)
        deadline = time.monotonic() + timeout
        while True:
            primitive = receive(True, max(0.0, min(0.05, deadline - time.monotonic())))
            if primitive is not None or time.monotonic() >= deadline or _closed(dul):
                return primitive
    return receive_pdu
