"""The DICOM application entity: presentation contexts, association policy, handler routing, and a
stop that lets requests in flight finish and commit."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from pynetdicom import evt
from pynetdicom.sop_class import Verification
from pydicom import config as pydicom_config
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workflow import __version__
from workflow.config import Settings
from workflow.dimse.admission import Admission, AdmissionRequestHandler
from workflow.dimse.datasets import status_dataset
from workflow.dimse import closing, event_driven, unserved
from workflow.dimse.guards import DatasetLimit, TlsAssociationServer
from workflow.dimse.json_encoder import install as send_encoded_as_is
from workflow.dimse.nodelay import NoDelayAE, NoDelayAssociationServer
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.audit.rules.messages import NODE_AUTHENTICATION, RESTRICTED_FUNCTION, Code
from workflow.rights import allows, needed
from workflow.kernel import statuses
from workflow.kernel.requestor import Requestor, acting_for
from workflow.metrics import Metrics

log = logging.getLogger("workflow.dimse")

# Our own implementation identity (PS3.7 D.3.3.2), stable across pynetdicom versions.
IMPLEMENTATION_CLASS_UID = "2.25.57341232141535019075580653872591262980"
IMPLEMENTATION_VERSION_NAME = f"WFM_{__version__}"[:16]

DRAIN_LIMIT = 5.0  # seconds a stop waits for responses already answered to leave, before it aborts
# Transfer syntaxes accepted on every context, in order of preference.
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


VERIFICATION = ServiceSpec("Verification", str(Verification), "SCP", "C-ECHO")
SOP_CLASS_NOT_SUPPORTED = statuses.Status(0x0122, "Failure", "SOP Class not supported")
NOT_AUTHORIZED = statuses.Status(0x0124, "Failure", "Refused: Not Authorized")
# What a request larger than max_dataset_bytes would get, were its association not being aborted.
TOO_LARGE = statuses.Status(0xA700, "Failure", "Refused: Out of Resources (max_dataset_bytes)")


class InFlight:
    """Requests received and not yet answered, so a stop can wait until every one has been handled,
    committed and its response queued.

    A request counts from the moment its last PDU arrives (EVT_DIMSE_RECV, before any handler runs)
    until its final response is sent (EVT_DIMSE_SENT); an association that ends drops its count.
    Handlers also count themselves, so a commit still running on a dead association is waited for.
    """

    C_CANCEL_RQ = 0x0FFF
    PENDING = (0xFF00, 0xFF01)

    def __init__(self) -> None:
        self._pending: dict[int, int] = {}
        self._handlers = 0
        self._cond = threading.Condition()

    def _change(self, key: int, delta: int) -> None:
        with self._cond:
            self._pending[key] = max(0, self._pending.get(key, 0) + delta)
            self._cond.notify_all()

    def on_received(self, event) -> None:
        field = event.message.command_set.CommandField
        if not field & 0x8000 and field != self.C_CANCEL_RQ:
            self._change(id(event.assoc), +1)

    def on_sent(self, event) -> None:
        command = event.message.command_set
        if command.CommandField & 0x8000 and command.get("Status") not in self.PENDING:
            self._change(id(event.assoc), -1)

    def on_ended(self, event) -> None:
        with self._cond:
            self._pending.pop(id(event.assoc), None)
            self._cond.notify_all()

    @contextmanager
    def handler(self) -> Iterator[None]:
        with self._cond:
            self._handlers += 1
        try:
            yield
        finally:
            with self._cond:
                self._handlers -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._handlers and not any(self._pending.values()), timeout)


def build_ae(settings: Settings, offers: tuple[ServiceSpec, ...], get_storage: tuple[str, ...] = ()) -> NoDelayAE:
    """The AE; `get_storage`: storage SOP classes a C-GET sends back on the requestor's association,
    whose SCP role (the requestor's) is accepted."""
    ae = NoDelayAE(ae_title=settings.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    for uid in dict.fromkeys(spec.sop_class_uid for spec in (VERIFICATION, *offers)):
        if uid not in get_storage:
            ae.add_supported_context(uid, list(TRANSFER_SYNTAXES))
    for uid in get_storage:
        ae.add_supported_context(uid, list(TRANSFER_SYNTAXES), scu_role=True, scp_role=True)
    ae.require_calling_aet = []  # the admission policy decides (dimse/admission.py)
    ae.maximum_associations = settings.max_associations
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.artim_timeout  # ARTIM: a silent peer's association request times out
    ae.dimse_timeout = settings.network_timeout
    return ae


class DicomServer:
    """The Application Entity: Verification, and every SOP class the features' routes offer."""

    def __init__(self, settings: Settings, routes: Routes, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.routes = routes
        self.ae = build_ae(settings, routes.offers, routes.get_storage)
        self.in_flight = InFlight()
        self.metrics = metrics or Metrics()
        self.admission = Admission(settings)
        send_encoded_as_is()  # responses encoded straight from DICOM JSON (json_encoder.Encoded)
        event_driven.install()  # pynetdicom's reactors wait for work instead of polling each millisecond
        closing.install()  # a response racing an association's close is dropped, not fatal to its DUL
        unserved.tolerate_invalid_instance_uids()  # answered 0117, not aborted with pynetdicom's traceback
        # A value that breaks its VR is answered with a status and one log line of ours; pydicom's reading
        # checks logged it again, three to five times over (logger and warning) for one over-long UID.
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
        self.dataset_limit = DatasetLimit(settings.max_dataset_bytes, self._too_large)
        self._names = {spec.sop_class_uid: spec.name for spec in (VERIFICATION, *routes.offers)}
        self._received: dict[tuple[int, int], float] = {}  # (association, message ID) -> when
        # Told of refusals (the audit trail's Security Alert); the composition root sets it. False: this
        # source's refusals of this kind are past `refusals_per_minute`, counted and not logged one by one.
        self.security_alert: Callable[[Code, Requestor, str], bool] = lambda kind, who, detail: True
        self._server = None
        self._tls_server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def tls_port(self) -> int:
        return self._tls_server.server_address[1] if self._tls_server else 0

    def start(self) -> None:
        handlers = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_N_CREATE, self._route("AffectedSOPClassUID", self.routes.n_create)),
            (evt.EVT_N_GET, self._route("RequestedSOPClassUID", self.routes.n_get)),
            (evt.EVT_N_SET, self._route("RequestedSOPClassUID", self.routes.n_set)),
            (evt.EVT_N_ACTION, self._route("RequestedSOPClassUID", self.routes.n_action)),
            (evt.EVT_C_FIND, self._on_c_find),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_C_GET, self._retrieve(self.routes.c_get, (0, (status_dataset(SOP_CLASS_NOT_SUPPORTED), None)))),
            (evt.EVT_C_MOVE, self._retrieve(self.routes.c_move, ((None, None),))),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ESTABLISHED, unserved.answer_unserved(self.routes.served_on)),
            (evt.EVT_DIMSE_RECV, self.in_flight.on_received),
            (evt.EVT_DIMSE_SENT, self.in_flight.on_sent),
            (evt.EVT_DIMSE_RECV, self._request_received),
            (evt.EVT_DIMSE_SENT, self._count_response),
            (evt.EVT_ABORTED, self._forget),
            (evt.EVT_RELEASED, self._forget),
            (evt.EVT_ABORTED, self.in_flight.on_ended),
            (evt.EVT_RELEASED, self.in_flight.on_ended),
            (evt.EVT_CONN_CLOSE, self.in_flight.on_ended),
            (evt.EVT_PDU_RECV, self.dataset_limit),
            (evt.EVT_ABORTED, self.dataset_limit.forget),
            (evt.EVT_RELEASED, self.dataset_limit.forget),
        ]
        self._server = self._listen(self.settings.port, NoDelayAssociationServer, handlers)
        log.info(f"listening as {self.settings.ae_title} on {self.settings.host}:{self.port}")
        if self.settings.tls_port:
            from workflow.tls import server_context

            try:
                self._tls_server = self._listen(self.settings.tls_port, TlsAssociationServer, handlers,
                                                tls=server_context(self.settings),
                                                handshake_timeout=self.settings.artim_timeout,
                                                handshake_failed=self._handshake_failed)
            except OSError as exc:
                self.stop(0)
                exc.tls = True  # which listener failed, for the start-up message
                raise
            log.info(f"listening as {self.settings.ae_title} on {self.settings.host}:{self.tls_port} (DICOM TLS)")
        if self.admission.open:
            log.warning("no [[client_ae]] and allowed_calling_aes is empty: associations from any calling AE "
                        "title are accepted, with every right")

    def _listen(self, port: int, server_class, handlers, **attributes):
        """What AE.start_server(block=False) does, with our server and request handler classes; the
        server's `attributes` are set before it serves."""
        server = self.ae.make_server((self.settings.host, port), evt_handlers=handlers, server_class=server_class,
                                     request_handler=AdmissionRequestHandler)
        server.admission = self.admission
        for name, value in attributes.items():
            setattr(server, name, value)
        self.ae._servers.append(server)
        threading.Thread(target=server.serve_forever, name=f"wfm-acceptor-{port}", daemon=True).start()
        return server

    def stop(self, grace: float | None = None) -> bool:
        """Stop listening, let requests in flight finish (up to `grace` seconds), then close every
        association. Returns False if some request was still running when the grace ran out."""
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._server is None:
            return True
        servers = [s for s in (self._server, self._tls_server) if s is not None]
        for server in servers:
            server.shutdown()
        idle = self.in_flight.wait_idle(grace)
        associations = [a for server in servers for a in server.active_associations]
        sent_by = time.monotonic() + DRAIN_LIMIT
        for assoc in associations:
            event_driven.drain(assoc, sent_by)  # the last responses leave before the A-ABORT
            assoc.abort()
        deadline = time.monotonic() + 5
        for assoc in associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
        for server in servers:
            server.server_close()
        self._server = self._tls_server = None
        log.info("stopped" if idle else "stopped with requests still in flight")
        return idle

    def _request_received(self, event) -> None:
        command = event.message.command_set
        if not command.CommandField & 0x8000 and "MessageID" in command:
            self._received[(id(event.assoc), int(command.MessageID))] = time.perf_counter()

    def _forget(self, event) -> None:
        """Requests of an association that ended unanswered are not waited for."""
        for key in [k for k in self._received if k[0] == id(event.assoc)]:
            self._received.pop(key, None)

    def _count_response(self, event) -> None:
        """Metrics: each final response, by SOP class, DIMSE command and status, with its latency."""
        command = event.message.command_set
        status = command.get("Status")
        if not command.CommandField & 0x8000 or status in InFlight.PENDING or status is None:
            return
        started = self._received.pop((id(event.assoc), int(command.get("MessageIDBeingRespondedTo", -1))), None)
        sop_class = str(command.get("AffectedSOPClassUID", "") or event.context.abstract_syntax)
        service = f"{self._names.get(sop_class, sop_class)} {type(event.message).__name__.replace('_RSP', '')}"
        self.metrics.observe("dimse", service, f"{int(status):04X}",
                             time.perf_counter() - started if started else 0.0)

    def _on_echo(self, event) -> int:
        with self.in_flight.handler():
            log.info("C-ECHO", extra={"calling_ae": event.assoc.requestor.ae_title,
                                      "sop_class": str(Verification), "status": "0000"})
            return 0x0000

    def _route(self, field: str, handlers: dict[str, Callable]) -> Callable:
        """One handler per event type serves the whole AE: route on the request's SOP Class UID (UPS
        N-* requests carry the Push UID on any UPS context), once the calling AE's rights allow it."""
        def route(event):
            with self.in_flight.handler(), acting_for(_requestor(event)):
                sop_class = str(getattr(event.request, field))
                handler = handlers.get(sop_class)
                if handler is None:
                    return self._no_such_sop_class(event, sop_class)
                if self.dataset_limit.over(event.assoc):
                    return status_dataset(TOO_LARGE), None
                if self._refused(event, sop_class):
                    return status_dataset(NOT_AUTHORIZED), None
                return handler(event)
        return route

    def _no_such_sop_class(self, event, sop_class: str) -> tuple:
        """0118, logged: a request on its SOP class's context for an operation no feature serves there (an
        N-SET of an IAN, an N-CREATE with the UPS Pull UID). The association goes on."""
        command = type(event.request).__name__.replace("_", "-")
        uid = unserved.sop_instance_of(event.request)
        log.warning(f"refused (0118): no {command} is served for {self._names.get(sop_class, sop_class)}",
                    extra={"calling_ae": _requestor(event).name, "sop_class": sop_class,
                           "sop_instance": str(uid) if uid else None, "status": "0118"})
        return status_dataset(statuses.NO_SUCH_SOP_CLASS, f"no {command} for this SOP Class"), None

    def _refused(self, event, sop_class: str) -> bool:
        """True (logged, and a Security Alert) when the calling AE lacks the right this request needs."""
        command = type(event.request).__name__.replace("_", "-")
        action = getattr(event.request, "ActionTypeID", None) if command == "N-ACTION" else None
        right = needed(sop_class, command, action)
        held = self.admission.rights_of(event.assoc.requestor.ae_title) or frozenset()
        if right is None or allows(held, right):
            return False
        who = _requestor(event)
        detail = f"{command} of {self._names.get(sop_class, sop_class)} needs the right {right.value!r}"
        if self.security_alert(RESTRICTED_FUNCTION, who, detail):
            log.warning(f"refused (0124): {detail}", extra={"calling_ae": who.name, "sop_class": sop_class,
                                                            "status": "0124"})
        return True

    def _on_c_find(self, event):
        with self.in_flight.handler(), acting_for(_requestor(event)):
            sop_class = str(event.context.abstract_syntax)
            handler = self.routes.c_find.get(sop_class)
            if handler is None:
                yield status_dataset(SOP_CLASS_NOT_SUPPORTED), None
                return
            if self.dataset_limit.over(event.assoc):
                yield status_dataset(TOO_LARGE), None
                return
            if self._refused(event, sop_class):  # a refusal, never an empty success
                yield status_dataset(NOT_AUTHORIZED), None
                return
            yield from handler(event)

    def _retrieve(self, handlers: dict[str, Callable], unrouted: tuple) -> Callable:
        """C-GET and C-MOVE, routed by abstract syntax like C-FIND (their contexts are admitted only to an
        AE with the right, so no per-request check). Unrouted: C-GET says no sub-operations, then 0122;
        C-MOVE's first answer is its destination, and "none" is answered A801 by pynetdicom."""
        def handle(event):
            with self.in_flight.handler(), acting_for(_requestor(event)):
                handler = handlers.get(str(event.context.abstract_syntax))
                if handler is None:
                    yield from unrouted
                    return
                yield from handler(event)
        return handle

    def _on_c_store(self, event) -> int:
        with self.in_flight.handler(), acting_for(_requestor(event)):
            sop_class = str(event.context.abstract_syntax)
            handler = self.routes.c_store.get(sop_class)
            if handler is None:
                return SOP_CLASS_NOT_SUPPORTED.code
            if self.dataset_limit.over(event.assoc):
                return TOO_LARGE.code
            return NOT_AUTHORIZED.code if self._refused(event, sop_class) else handler(event)

    def _on_rejected(self, event) -> None:
        requestor = event.assoc.requestor
        reason = getattr(event.assoc, "refusal", None) or "rejected (association limit reached)"
        if self.security_alert(NODE_AUTHENTICATION, _requestor(event), f"association rejected: {reason}"):
            log.warning(f"association rejected: {reason}",
                        extra={"calling_ae": requestor.ae_title, "peer": f"{requestor.address}:{requestor.port}"})

    def _handshake_failed(self, address: str, reason: str) -> None:
        if self.security_alert(NODE_AUTHENTICATION, Requestor("", address.rsplit(":", 1)[0], "dimse"),
                               f"TLS handshake with {address} failed: {reason}"):
            log.warning(f"TLS handshake failed: {reason}", extra={"peer": address})

    def _too_large(self, assoc, size: int) -> None:
        requestor = assoc.requestor
        log.warning(f"association aborted: a data set of more than {self.settings.max_dataset_bytes} bytes "
                    f"(max_dataset_bytes)", extra={"calling_ae": requestor.ae_title,
                                                   "peer": f"{requestor.address}:{requestor.port}"})


def _requestor(event) -> Requestor:
    requestor = event.assoc.requestor
    return Requestor(requestor.ae_title, str(requestor.address), "dimse")
