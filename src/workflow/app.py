"""The composition root: builds the store, the services and the DICOM server; starts and stops them."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from workflow.reconcile import scheduler as jobs
from workflow.config import Settings
from workflow.ups.dimse.event_sender import EventSender
from workflow.ian.dimse.scp import IanScp
from workflow.mpps.dimse.scp import MppsScp
from workflow.reconcile.dimse.storage_scp import InventoryStorageScp
from workflow.dimse.server import DicomServer
from workflow.ups.dimse.scp import UpsScp
from workflow.ian.ingest import IngestService
from workflow.ups.outbox import Outbox
from workflow.ups.outbox import utcnow
from workflow.mpps.service import PerformedStepService
from workflow.readiness.service import ReadinessService
from workflow.ups.worklist import WorklistService
from workflow.readiness.rules.policy import PolicyError, load_policies
from workflow.store import migrate
from workflow.store.resources import policies_location
from workflow.store.engine import make_engine

log = logging.getLogger("workflow.app")
# An Inventory instance C-MOVEd to us that no reconciliation took within this long was orphaned by one
# that died (a live run takes each within its network timeout).
UNTAKEN_INVENTORY_KEPT = timedelta(hours=24)


class App:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.ingest = IngestService(self.engine)
        self.outbox = Outbox(self.engine, settings)
        self.events = EventSender(self.outbox, settings)
        self.worklist = WorklistService(self.engine, settings, notify=self.events.wake.set)
        self.performed_steps = PerformedStepService(self.engine)
        self.policies = load_policies(policies_location(settings.policies))
        self.readiness = ReadinessService(self.engine, self.policies, self.worklist)
        self.ingest.after_store = self.performed_steps.after_change = self.readiness.study_changed
        self.worklist.after_create = self.readiness.workitem_created
        self.readiness_wake = threading.Event()
        self.ingest.notify = self.performed_steps.notify = self._changed
        self.dicom = DicomServer(settings, IanScp(self.ingest, settings.max_instances_per_ian),
                                 UpsScp(self.worklist), MppsScp(self.performed_steps),
                                 InventoryStorageScp(self.engine))
        self._housekeeping = threading.Event()
        # Scheduled reconciliation; None while no archive has a schedule (see jobs.py).
        self.scheduler: jobs.ReconcileScheduler | None = None

    def start(self) -> None:
        migrate.upgrade(self.engine)
        log.info(f"database at schema revision {migrate.current_revision(self.engine)}")
        jobs.recover_stale_runs(self.engine, self.settings)  # runs whose process died block their archive
        self.dicom.start()
        self.worklist.status_change("RESTARTED")
        self.events.start()
        self._workers = [threading.Thread(target=loop, name=name, daemon=True) for loop, name in (
            (self._purge_loop, "wfm-retention"), (self._timer_loop, "wfm-readiness-timers"),
            (self._readiness_loop, "wfm-readiness"))]
        for worker in self._workers:
            worker.start()
        if jobs.scheduled_archives(self.settings):
            self.scheduler = jobs.ReconcileScheduler(self.settings, self.engine)
            self.scheduler.start()

    def stop(self) -> bool:
        # One grace for all: requests in flight and a running reconciliation finish within it; a
        # reconciliation still running then is recorded FAILED "interrupted by shutdown".
        grace_ends = time.monotonic() + self.settings.shutdown_grace
        if self.scheduler is not None:
            self.scheduler.shutdown()
        clean = self.dicom.stop()
        self._housekeeping.set()
        for worker in getattr(self, "_workers", ()):  # a pass under way finishes before the engine goes
            worker.join(max(1.0, grace_ends - time.monotonic()))
        # Subscribers hear we are going down; what cannot be delivered now stays owed.
        self.events.stop()
        self.worklist.status_change("GOING DOWN")
        self.events.deliver_due(final=True)
        if self.scheduler is not None:
            self.scheduler.finish(grace_ends)
        self.engine.dispose()
        return clean

    def reload_policies(self) -> bool:
        """SIGHUP: load the policy files again; a set with any error is refused whole and the policies
        in force stay."""
        try:
            policies = load_policies(policies_location(self.settings.policies))
        except PolicyError as exc:
            log.error(f"policies not reloaded, the previous ones stay in force: {exc}")
            return False
        self.policies = self.readiness.policies = policies
        log.info(f"policies reloaded: {len(policies.policies)} policies, {len(policies.templates)} templates")
        return True

    def _changed(self) -> None:
        """After an IAN or MPPS commit: the readiness worker has a study to evaluate, and the event
        sender may have reports to send."""
        self.readiness_wake.set()
        self.events.wake.set()

    def _readiness_loop(self) -> None:
        """Evaluates the studies IANs and MPPS marked pending (also those left by another process or
        before a restart: the loop looks every second). A study is evaluated once it has been quiet for
        `readiness_delay` (a burst of IANs costs one evaluation), or after `readiness_max_wait` during a
        long burst; the loop never spends more than half its time evaluating."""
        delay = self.settings.readiness_delay
        max_wait = max(delay, self.settings.readiness_max_wait)
        while not self._housekeeping.is_set():
            due = self.readiness.next_due
            timeout = 1.0 if due is None else min(1.0, max(0.0, (due - utcnow()).total_seconds()))
            if self.readiness_wake.wait(timeout):
                self._housekeeping.wait(delay)  # woken by a mark: the wait lets the rest of its burst arrive
            if self._housekeeping.is_set():
                return
            self.readiness_wake.clear()
            started = time.monotonic()
            try:
                if self.readiness.run_pending(utcnow(), quiet=delay, max_wait=max_wait):
                    self.events.wake.set()
            except Exception:  # noqa: BLE001 - the marks stay; the next round retries
                log.exception("readiness evaluation failed")
            self._housekeeping.wait(time.monotonic() - started)

    def _timer_loop(self, every: float = 1.0) -> None:
        """Readiness settle timers, kept in the database: those due (also while we were down) fire."""
        while not self._housekeeping.wait(every):
            try:
                if self.readiness.fire_due_timers(utcnow()):
                    self.events.wake.set()
            except Exception:  # noqa: BLE001 - the next round retries
                log.exception("readiness timers failed")

    def _purge_loop(self, every: float = 600.0) -> None:
        while not self._housekeeping.wait(every):
            try:
                self.purge()
            except Exception:  # noqa: BLE001 - housekeeping must not take the server down
                log.exception("retention purge failed")

    def purge(self) -> tuple[int, int]:
        """Retention: finished workitems past `ups_retention_hours` go, unless a deletion lock holds them;
        Inventory instances received for a reconciliation and never taken (it died) go after a day.
        Returns how many of each were removed."""
        from workflow.reconcile import received as received_inventories

        workitems = self.worklist.purge_finished()
        if workitems:
            log.info(f"retention: removed {workitems} finished workitems")
        inventories = received_inventories.purge(self.engine, utcnow() - UNTAKEN_INVENTORY_KEPT)
        if inventories:
            log.info(f"retention: removed {inventories} received Inventory instances no reconciliation took")
        return workitems, inventories

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
        while not stop.wait(3600):
            pass
        self.stop()
        return 0
