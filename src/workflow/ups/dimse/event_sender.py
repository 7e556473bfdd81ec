"""Delivers the outbox: opens an association to each subscriber's Receiving AE proposing UPS Event,
sends its owed N-EVENT-REPORTs in order, and records each outcome. Runs as one background thread.

The thread sleeps until an event is written for a subscriber (in this process: the commit's signal;
in another process on PostgreSQL: NOTIFY), a retry falls due, or the long fallback interval passes.
An association to a busy subscriber stays open for `KEEP_OPEN` seconds after its last event, so a
stream of events costs one association, not one each."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import UnifiedProcedureStepEvent, UnifiedProcedureStepPush

from workflow.config import Settings
from workflow.dimse.charsets import with_character_set
from workflow.dimse.json_encoder import encoded_or_none
from workflow.dimse.json_encoder import install as send_encoded_as_is
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release
from workflow.dimse.routing import ServiceSpec
from workflow.kernel.clock import utcnow
from workflow.tls import outgoing
from workflow.ups.leases import Leases
from workflow.ups.outbox import Outbox, OwedEvent

log = logging.getLogger("workflow.events")

SERVICE = ServiceSpec("Unified Procedure Step - Event", str(UnifiedProcedureStepEvent), "SCU", "N-EVENT-REPORT")

# Events that are not about one workitem (SCP Status Change) name the global subscription instance.
GLOBAL_SUBSCRIPTION_UID = "1.2.840.10008.5.1.4.34.5"

FALLBACK = 60.0  # seconds: the longest the sender sleeps with nothing due and no wake-up
BATCH = 100  # events read per subscriber and round
KEEP_OPEN = 5.0  # seconds an idle association to a subscriber stays open for the next event


class EventSender:
    def __init__(self, outbox: Outbox, settings: Settings) -> None:
        self.outbox = outbox
        self.settings = settings
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open: dict[str, tuple[object, float]] = {}  # AE title -> (association, when last used)
        self.leases = Leases(outbox.engine)

    def start(self) -> None:
        send_encoded_as_is()
        self._thread = threading.Thread(target=self._run, name="wfm-event-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._close_idle(keep=0.0)
        self.leases.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                next_due = self.deliver_due()
            except Exception:  # noqa: BLE001 - the sender must outlive a database hiccup
                log.exception("event delivery round failed")
                self.leases.close()  # its connection may be gone, and the leases with it
                next_due = None
            wait = FALLBACK if next_due is None else max(0.0, min(FALLBACK, (next_due - utcnow()).total_seconds()))
            if self._open:  # wake up to release the associations that went idle
                wait = min(wait, max(0.0, min(used for _, used in self._open.values()) + KEEP_OPEN - time.monotonic()))
            self.wake.wait(wait)
            self.wake.clear()
            self._close_idle(keep=KEEP_OPEN)  # their leases go at the end of the round that follows

    def deliver_due(self, final: bool = False) -> datetime | None:
        """One delivery round; returns when the next event falls due (None: nothing owed now). `final`:
        the last round at shutdown, run after the thread stopped."""
        owed, later = self.outbox.owed_now(utcnow(), BATCH, self.leases.conn)
        failed = more = elsewhere = False
        for ae_title, events in owed.items():
            if self._stop.is_set() and not final:
                break
            held, new = self.leases.take(ae_title)
            if not held:  # another process is delivering to it
                elsewhere = True
                continue
            if new:  # read again now the lease is ours: another process may just have delivered some
                events = self.outbox.pending_for(ae_title, BATCH, self.leases.conn)
            more |= len(events) == BATCH  # a subscriber owed more than one batch: next round at once
            if events:
                failed |= not self._deliver(ae_title, events)
        if final:
            self._close_idle(keep=0.0)
            self.leases.close()
        else:
            self.leases.keep_only(self._open)  # a lease lasts as long as its association
        # A failure set a retry time, a full batch left events owed; otherwise what waited stays the next
        # (new events wake us). Events another process holds the lease for: look again once its lease
        # could have lapsed, should that process have died before delivering them.
        next_due = self.outbox.next_due(dimse=True) if failed or more else later
        if elsewhere:
            recheck = utcnow() + timedelta(seconds=KEEP_OPEN)
            next_due = min(next_due or recheck, recheck)
        return next_due

    def _deliver(self, ae_title: str, events: list[OwedEvent]) -> bool:
        """Send the events in order; False at the first that failed (recorded, later ones wait)."""
        remote = self.settings.remote(ae_title)
        if remote is None:
            return self._failed(events[0], f"Receiving AE {ae_title} is not a configured remote_ae")
        assoc, reused = self._association(ae_title, remote)
        if assoc is None:
            return self._failed(events[0], reused)
        for event in events:
            status = self._send(assoc, event)
            if status is None and reused:
                # The subscriber may have closed the association it kept open: one fresh try.
                self._drop(ae_title)
                assoc, problem = self._association(ae_title, remote)
                if assoc is None:
                    return self._failed(event, problem)
                status = self._send(assoc, event)
            reused = True
            if status is not None and status < 0xA000:  # Success or Warning
                self.outbox.delivered(event.id, utcnow(), self.leases.conn)
                self._open[ae_title] = (assoc, time.monotonic())
                log.info("event delivered", extra={"called_ae": ae_title, "sop_instance": event.workitem_uid,
                                                   "status": f"{status:04X}"})
                continue
            self._drop(ae_title)
            return self._failed(event, "no response" if status is None else f"status 0x{status:04X}")
        return True

    def _association(self, ae_title: str, remote):
        """The open association to the subscriber (reused: True), or a new one (False); (None, why)
        when none can be had."""
        kept = self._open.get(ae_title)
        if kept is not None and kept[0].is_established:
            return kept[0], True
        self._drop(ae_title)
        ae = NoDelayAE(ae_title=self.settings.ae_title)
        ae.add_requested_context(UnifiedProcedureStepEvent, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = min(30.0, self.settings.network_timeout)
        try:
            assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title,
                                 tls_args=outgoing(self.settings, remote))
        except OSError as exc:
            return None, f"cannot connect: {exc}"
        if not assoc.is_established:
            return None, ("association rejected" if assoc.is_rejected
                          else "could not connect, or the association was aborted")
        self._open[ae_title] = (assoc, time.monotonic())
        return assoc, False

    def _drop(self, ae_title: str) -> None:
        kept = self._open.pop(ae_title, None)
        if kept is not None:
            release(kept[0])

    def _close_idle(self, keep: float) -> None:
        """Release the associations unused for `keep` seconds."""
        now = time.monotonic()
        for ae_title in [ae for ae, (_, used) in self._open.items() if now - used >= keep]:
            try:
                self._drop(ae_title)
            except Exception:  # noqa: BLE001 - a subscriber gone meanwhile; nothing is owed on it
                self._open.pop(ae_title, None)

    @staticmethod
    def _send(assoc, event: OwedEvent) -> int | None:
        # Encoded straight from the stored DICOM JSON (pydicom's Dataset and writer only for what that
        # encoder leaves to it): the round runs while the claim's answer is on its way out.
        implicit = next((cx.transfer_syntax[0].is_implicit_VR for cx in assoc.accepted_contexts
                         if cx.abstract_syntax == UnifiedProcedureStepEvent), False)
        dataset = encoded_or_none(event.event, implicit) or Dataset.from_json(with_character_set(event.event))
        status, _ = assoc.send_n_event_report(dataset, event.event_type_id, UnifiedProcedureStepPush,
                                              event.workitem_uid, meta_uid=UnifiedProcedureStepEvent)
        return int(status.Status) if status and "Status" in status else None

    def _failed(self, event: OwedEvent, error: str) -> bool:
        """Record a failed attempt; returns False (for `_deliver`)."""
        outcome = self.outbox.failed(event, error, utcnow())
        level = logging.ERROR if outcome != "PENDING" else logging.WARNING
        log.log(level, f"event delivery failed ({error}); {outcome.lower()}",
                extra={"called_ae": event.receiving_ae, "sop_instance": event.workitem_uid,
                       "reason": error})
        return False
