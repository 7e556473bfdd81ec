"""Delivers the outbox: opens an association to each subscriber's Receiving AE proposing UPS Event,
sends its owed N-EVENT-REPORTs in order, and records each outcome. Runs as one background thread."""

from __future__ import annotations

import logging
import threading

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import UnifiedProcedureStepEvent, UnifiedProcedureStepPush

from workflow.config import Settings
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.routing import ServiceSpec
from workflow.kernel.clock import utcnow
from workflow.tls import outgoing
from workflow.ups.outbox import Outbox, OwedEvent

log = logging.getLogger("workflow.events")

SERVICE = ServiceSpec("Unified Procedure Step - Event", str(UnifiedProcedureStepEvent), "SCU", "N-EVENT-REPORT")

# Events that are not about one workitem (SCP Status Change) name the global subscription instance.
GLOBAL_SUBSCRIPTION_UID = "1.2.840.10008.5.1.4.34.5"


class EventSender:
    def __init__(self, outbox: Outbox, settings: Settings) -> None:
        self.outbox = outbox
        self.settings = settings
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wfm-event-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                next_due = self.outbox.next_due(dimse=True)
            except Exception:  # noqa: BLE001 - the sender must outlive a database hiccup
                log.exception("event delivery round failed")
                next_due = None
            wait = 5.0 if next_due is None else max(0.0, min(5.0, (next_due - utcnow()).total_seconds()))
            self.wake.wait(wait)
            self.wake.clear()

    def deliver_due(self, final: bool = False) -> None:
        """One delivery round. `final`: the last round at shutdown, run after the thread stopped."""
        for ae_title in self.outbox.due_subscribers(utcnow(), dimse=True):
            if self._stop.is_set() and not final:
                return
            with self.outbox.lease(ae_title) as mine:
                # Read the owed events only once the lease is ours: another process may just
                # have delivered some of them.
                events = self.outbox.pending_for(ae_title) if mine else []
                if events:
                    self._deliver(ae_title, events)

    def _deliver(self, ae_title: str, events: list[OwedEvent]) -> None:
        remote = self.settings.remote(ae_title)
        if remote is None:
            self._failed(events[0], f"Receiving AE {ae_title} is not a configured remote_ae")
            return
        ae = NoDelayAE(ae_title=self.settings.ae_title)
        ae.add_requested_context(UnifiedProcedureStepEvent, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = min(30.0, self.settings.network_timeout)
        try:
            assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title,
                                 tls_args=outgoing(self.settings, remote))
        except OSError as exc:
            self._failed(events[0], f"cannot connect: {exc}")
            return
        if not assoc.is_established:
            self._failed(events[0], "association rejected" if assoc.is_rejected
                         else "could not connect, or the association was aborted")
            return
        try:
            for event in events:
                status = self._send(assoc, event)
                if status is not None and status < 0xA000:  # Success or Warning
                    self.outbox.delivered(event.id, utcnow())
                    log.info("event delivered", extra={"called_ae": ae_title, "sop_instance": event.workitem_uid,
                                                       "status": f"{status:04X}"})
                    continue
                reason = "no response" if status is None else f"status 0x{status:04X}"
                self._failed(event, reason)
                return
        finally:
            if assoc.is_established:
                assoc.release()

    @staticmethod
    def _send(assoc, event: OwedEvent) -> int | None:
        dataset = Dataset.from_json(event.event)
        status, _ = assoc.send_n_event_report(dataset, event.event_type_id, UnifiedProcedureStepPush,
                                              event.workitem_uid, meta_uid=UnifiedProcedureStepEvent)
        return int(status.Status) if status and "Status" in status else None

    def _failed(self, event: OwedEvent, error: str) -> None:
        outcome = self.outbox.failed(event, error, utcnow())
        level = logging.ERROR if outcome != "PENDING" else logging.WARNING
        log.log(level, f"event delivery failed ({error}); {outcome.lower()}",
                extra={"called_ae": event.receiving_ae, "sop_instance": event.workitem_uid,
                       "reason": error})
