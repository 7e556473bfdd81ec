"""The composition root: builds the store, each feature's services and background workers, and the
DICOM face with every feature's routes; says who tells whom what; starts and stops them in order."""

from __future__ import annotations

import errno
import logging
import signal
import threading
import time

from sqlalchemy import Engine

from workflow import heap
from workflow.access.tokens import Tokens
from workflow.audit.rules import messages
from workflow.audit.sender import AuditSender, Repository
from workflow.audit.trail import AuditTrail
from workflow.config import Settings
from workflow.console import pages as console_pages
from workflow.dimse.routing import Routes
from workflow.dimse.server import VERIFICATION, DicomServer
from workflow.ian import http as ian_http
from workflow.ian.dimse import scp as ian_scp
from workflow.ian.ingest import IngestService
from workflow.inventory.dimse import qr_scp as inventory_qr
from workflow.kernel.clock import utcnow
from workflow.kernel.requestor import Requestor
from workflow.kernel.ports import Signal
from workflow.kernel.worker import Periodic
from workflow.metrics import Metrics
from workflow.mpps import http as mpps_http
from workflow.mpps.dimse import scp as mpps_scp
from workflow.mpps.service import PerformedStepService
from workflow.overview import http as overview_http
from workflow.readiness import http as readiness_http
from workflow.readiness.rules.policy import PolicyError
from workflow.readiness.service import ReadinessService
from workflow.readiness.site_policies import load_site_policies
from workflow.readiness.worker import ReadinessWorker
from workflow.reconcile import http as reconcile_http
from workflow.reconcile import received as received_inventories
from workflow.reconcile import scheduler as reconcile_scheduler
from workflow.reconcile.dimse import services as reconcile_services
from workflow.reconcile.dimse import storage_scp
from workflow.store import migrate, wakeups
from workflow.store.engine import make_engine
from workflow.store.resources import policies_location
from workflow.ups import http as ups_http, http_events
from workflow.ups.dimse import event_sender, scp as ups_scp
from workflow.ups.outbox import Outbox
from workflow.ups.worklist import WorklistService
from workflow.web import asgi, system
from workflow.tls import server_context
from workflow.web.server import HttpServer

log = logging.getLogger("workflow.app")

# The SOP classes the DICOM face offers and uses, in the order the conformance statement lists them.
OFFERED = (VERIFICATION, ian_scp.SERVICE, mpps_scp.SERVICE, *ups_scp.SERVICES, storage_scp.SERVICE,
           *inventory_qr.SERVICES)
USED = (event_sender.SERVICE, *reconcile_services.CLIENT_SERVICES, inventory_qr.SUB_OPERATIONS)
HOUSEKEEPING_EVERY = 600.0  # seconds between retention rounds
EVENT_EXPIRY_EVERY = 60.0  # seconds between rounds expiring events no WebSocket took (at most)


class StartupError(Exception):
    """The server cannot start for a reason its operator can fix; the message says how."""


def listen_problem(face: str, host: str, port: int, setting: str, exc: OSError) -> str:
    """One line on why a listener could not start, naming the setting that changes it."""
    env = f"WFM_{setting.upper()}"
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen for {face} on {host}:{port}: the port is already in use (another wfm or "
                f"server?); choose another with `{setting}` in the config file or {env}")
    if exc.errno == errno.EACCES:
        return (f"cannot listen for {face} on {host}:{port}: permission denied (ports below 1024 need "
                f"privileges); choose another with `{setting}` or {env}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen for {face} on {host}:{port}: no such local address; check `host` or WFM_HOST"
    return f"cannot listen for {face} on {host}:{port}: {exc.strerror or exc}"


class App:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.policies = load_site_policies(settings.policies)
        # Fired after a commit that wrote UPS event reports: every face that delivers them wakes.
        self.events_written = Signal()

        # The audit trail: records written in the transaction of what they describe, drained by a sender.
        self.audit = AuditTrail(self.engine, settings)
        # It retries an unreachable repository as the event sender retries a subscriber.
        self.audit_sender = (AuditSender(self.engine, Repository(settings.audit_repository,
                                                                 settings.audit_ca_certificates), self.audit.wake,
                                         retry_first=settings.event_retry_initial,
                                         retry_max=settings.event_retry_max_interval)
                             if settings.audit_repository else None)

        # Features, from the bottom up: each is told, in its constructor, whom it tells of a change.
        self.worklist = WorklistService(self.engine, settings, events=self.events_written, audit=self.audit)
        self.readiness = ReadinessService(self.engine, self.policies, self.worklist)
        self.worklist.new_workitems = self.readiness  # a new workitem is evaluated in its N-CREATE
        self.ingest = IngestService(self.engine, max_instances=settings.max_instances_per_ian,
                                    type2_absent=settings.type2_absent, studies=self.readiness, audit=self.audit)
        self.performed_steps = PerformedStepService(self.engine, type2_absent=settings.type2_absent,
                                                    studies=self.readiness, audit=self.audit)

        # Background workers.
        self.outbox = Outbox(self.engine, settings)
        self.events = event_sender.EventSender(self.outbox, settings)
        self.events_written.connect(self.events.wake.set)
        self.readiness_worker = ReadinessWorker(self.readiness, settings, self.events_written)
        self.housekeeping = Periodic("wfm-housekeeping", HOUSEKEEPING_EVERY, round=self.purge)
        # Events owed to WebSocket subscribers expire whether or not HTTP is on (a subscriber made by
        # another process, or an AE title since added to [[remote_ae]] and removed again).
        expiry_every = max(1.0, min(EVENT_EXPIRY_EVERY, settings.event_retry_for / 4))
        self.event_expiry = Periodic("wfm-event-expiry", expiry_every, round=self.expire_events)
        # Other processes' commits on the same PostgreSQL wake these workers too (LISTEN/NOTIFY).
        self.wakeups = wakeups.Listener(self.engine)
        self.wakeups.on(wakeups.EVENTS, self.events_written.fire)
        self.wakeups.on(wakeups.READINESS, self.readiness.wake.set)
        if self.audit_sender is not None:
            self.wakeups.on(wakeups.AUDIT, self.audit.wake.set)
        # Scheduled reconciliation; None while no archive has a schedule.
        self.scheduler: reconcile_scheduler.ReconcileScheduler | None = None

        # The DICOM face: every feature's handlers, routed by SOP class.
        self.metrics = Metrics()
        self.dicom = DicomServer(settings, Routes.merge(
            ian_scp.IanScp(self.ingest, self.metrics).routes(),
            mpps_scp.MppsScp(self.performed_steps).routes(),
            ups_scp.UpsScp(self.worklist).routes(),
            storage_scp.InventoryStorageScp(self.engine, self.audit).routes(),
            inventory_qr.InventoryQrScp(self.engine, settings, self.audit).routes(),
            Routes(uses=(event_sender.SERVICE,)),
        ), self.metrics)
        self.dicom.security_alert = lambda kind, who, detail: self.audit.refused(
            kind, who, messages.security_alert(kind, who, detail))

        # The HTTP face: every feature's routes on the same services.
        self.tokens = Tokens(self.engine, self.audit)
        self.http: HttpServer | None = None
        self.event_hub = http_events.EventHub(self.outbox)
        if settings.http_port or settings.https_port:
            self.events_written.connect(self.event_hub.written)
            routers = [
                system.router(self.engine, self.metrics),
                http_events.router(self.event_hub, self.outbox, self.tokens),
                ups_http.router(self.worklist),
                ian_http.router(self.ingest, self.metrics),
                mpps_http.router(self.performed_steps),
                overview_http.router(self.engine),
                readiness_http.router(self.readiness),
                reconcile_http.router(self.engine, self.audit),
            ]
            web_app = asgi.build(routers, self.tokens, self.metrics, self.audit, max_body=settings.max_dataset_bytes)
            # The web console on the same app, services and access rules; its live pages wake with the senders.
            self.console = console_pages.install(web_app, console_pages.ConsoleServices(
                settings, self.engine, self.worklist, self.readiness, self.outbox, self.tokens, self.audit,
                studies=self.readiness, policies=lambda: self.policies,
                associations=lambda: len(getattr(self.dicom._server, "active_associations", ())),
                listening=lambda: (self.dicom.port, self.http.port),
                backlogs=lambda: {"outbox": self.outbox.backlog(), "readiness": self.readiness.pending(),
                                  "audit": self.audit.backlog()}))
            self.events_written.connect(self.console.written)
            self.http = HttpServer(web_app, settings.http_address, settings.http_port, settings.shutdown_grace,
                                   tls=server_context(settings, client_certificates=False) if settings.https_port else None,
                                   tls_port=settings.https_port, handshake_timeout=settings.artim_timeout,
                                   request_timeout=settings.network_timeout,
                                   handshake_failed=self._https_handshake_failed)
        self.metrics.gauge("wfm_outbox_backlog", "UPS event reports owed to subscribers",
                           lambda: {(): self.outbox.backlog()})
        self.metrics.gauge("wfm_audit_backlog", "Audit records owed to the audit repository",
                           lambda: {(): self.audit.backlog()})
        self.metrics.gauge("wfm_readiness_backlog", "Studies waiting for readiness evaluation",
                           lambda: {(): self.readiness.pending()})

    def _https_handshake_failed(self, address: str, reason: str) -> None:
        who = Requestor("", address.rsplit(":", 1)[0], "http")
        if self.audit.refused(messages.NODE_AUTHENTICATION, who, messages.security_alert(
                messages.NODE_AUTHENTICATION, who, f"HTTPS handshake with {address} failed: {reason}")):
            log.warning(f"HTTPS handshake failed: {reason}", extra={"peer": address})

    def start(self) -> None:
        migrate.upgrade(self.engine)
        log.info(f"database at schema revision {migrate.current_revision(self.engine)}")
        reconcile_scheduler.recover_stale_runs(self.engine, self.settings)  # runs whose process died block their archive
        if self.audit_sender is not None:
            self.audit_sender.start()
        self.audit.record_now(messages.application_activity(started=True))
        try:
            self.dicom.start()
        except OSError as exc:
            self.engine.dispose()
            tls = getattr(exc, "tls", False)
            raise StartupError(listen_problem("DICOM TLS" if tls else "DICOM", self.settings.host,
                                              self.settings.tls_port if tls else self.settings.port,
                                              "tls_port" if tls else "port", exc)) from None
        if self.http is not None:
            try:
                self.http.start()
            except OSError as exc:
                self.dicom.stop(0)
                self.engine.dispose()
                https = getattr(exc, "https", False)
                raise StartupError(listen_problem("HTTPS" if https else "HTTP", self.settings.http_address,
                                                  self.settings.https_port if https else self.settings.http_port,
                                                  "https_port" if https else "http_port", exc)) from None
            self.event_hub.start(self.http.loop)
            self.http.on_stop.append(self.event_hub.close_all)
            self.http.on_stop.append(self.console.close_all)
            for scheme, port in (("http", self.http.port), ("https", self.http.tls_port)):
                if port:
                    log.info(f"HTTP on {scheme}://{self.settings.http_address}:{port} "
                             "(UPS-RS at /dicom-web, the console at /ui)")
            if not self.tokens.any_in_force():
                log.warning("no API token exists: HTTP accepts every request (`wfm token create NAME --rights ...`)")
        self.worklist.status_change("RESTARTED")
        self.wakeups.start()
        self.events.start()
        self.readiness_worker.start()
        self.housekeeping.start()
        self.event_expiry.start()
        if reconcile_scheduler.scheduled_archives(self.settings):
            self.scheduler = reconcile_scheduler.ReconcileScheduler(self.settings, self.engine,
                                                                    studies=self.readiness)
            self.scheduler.start()

    def stop(self) -> bool:
        # One grace for all: requests in flight and a running reconciliation finish within it; a
        # reconciliation still running then is recorded FAILED "interrupted by shutdown".
        grace_ends = time.monotonic() + self.settings.shutdown_grace
        if self.scheduler is not None:
            self.scheduler.shutdown()
        http_stopped = threading.Thread(target=self.http.stop, name="wfm-http-stop") if self.http else None
        if http_stopped:  # both faces finish their requests in flight at once
            http_stopped.start()
        clean = self.dicom.stop()
        if http_stopped:
            http_stopped.join()
        # A round under way finishes before the engine goes.
        self.housekeeping.stop(max(1.0, grace_ends - time.monotonic()))
        self.event_expiry.stop(max(1.0, grace_ends - time.monotonic()))
        self.readiness_worker.stop(max(1.0, grace_ends - time.monotonic()))
        # Subscribers hear we are going down; what cannot be delivered now stays owed.
        self.wakeups.stop()
        self.events.stop()
        self.worklist.status_change("GOING DOWN")
        self.events.deliver_due(final=True)
        if self.scheduler is not None:
            self.scheduler.finish(grace_ends)
        self.audit.refusals.close()  # counts of refusals not told one by one, told now
        self.audit.record_now(messages.application_activity(started=False))
        if self.audit_sender is not None:
            self.audit_sender.stop(max(1.0, grace_ends - time.monotonic()))
        self.engine.dispose()
        return clean

    def reload_policies(self) -> bool:
        """SIGHUP: load the policy files again; a set with any error is refused whole and the policies
        in force stay."""
        try:
            policies = load_site_policies(self.settings.policies, "policies reloaded")
        except PolicyError as exc:
            log.error(f"policies in {policies_location(self.settings.policies)} not reloaded, the previous "
                      f"ones stay in force:\n{exc}")
            self.audit.record_now(messages.security_alert(messages.SOFTWARE_CONFIGURATION, None,
                                                          f"policies not reloaded: {exc}"))
            return False
        self.policies = self.readiness.policies = policies
        self.audit.record_now(messages.security_alert(messages.SOFTWARE_CONFIGURATION, None,
                                                      "policies reloaded (SIGHUP)", failure=False))
        return True

    def purge(self) -> tuple[int, int]:
        """One housekeeping round: finished workitems past their retention (unless a deletion lock holds
        them), Inventory instances received for a reconciliation and never taken. Returns how many of
        each were removed."""
        return self.worklist.purge_finished(), received_inventories.purge(self.engine, utcnow())

    def expire_events(self) -> int:
        """One expiry round: how many events expired."""
        return self.outbox.expire_websocket_events(utcnow())

    def run_until_signalled(self) -> int:
        """`wfm serve`: run until SIGTERM or SIGINT, then stop cleanly. Exit status 0."""
        stop = threading.Event()

        def on_signal(signum, _frame):
            log.info(f"received {signal.Signals(signum).name}; finishing requests in flight")
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, lambda signum, frame: self.reload_policies())
        self.start()
        heap.settle()
        while not stop.wait(3600):
            pass
        self.stop()
        return 0
