"""Inventory Creation (PS3.4 KK): N-ACTION 11/12/13 on the Storage Management SOP Instance, each on a fresh
association, and the N-EVENT-REPORTs 11, 12 and 13 that follow, until production ends."""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association

from workflow.dimse.reactor import held, release
from workflow.reconcile.dimse.peer import ArchiveError, ArchivePeer, status_comment
from workflow.reconcile.dimse.sop_classes import INVENTORY_CREATION, STORAGE_MANAGEMENT_INSTANCE

INITIATE, REQUEST_STATUS, CANCEL = 11, 12, 13
TERMINATED_WITH, STATUS_EVENT, TERMINATED_WITHOUT = 11, 12, 13
log = logging.getLogger("workflow.inventory_client")


class NoAnswer(ArchiveError):
    """An N-ACTION got no response: the association dropped or the DIMSE timeout passed."""


@dataclass(frozen=True)
class Termination:
    event: int  # 11 or 13; 12 when a status event told the end
    status: str  # Transaction Status
    comment: str
    root_uid: str
    records: int | None


class Creation:
    """Associations on which one Inventory Creation transaction speaks, and the events it gets.

    Each N-ACTION opens a fresh association, which then carries the events (the archive sends them
    where the transaction was last spoken about). Older ones stay open until the end: an event
    already queued for them still arrives. `poll_after`: seconds without an event before a status
    request; `production_timeout`: seconds before the transaction is canceled and given up;
    `max_unanswered_polls`: status requests in a row without an event before giving up."""

    def __init__(self, archive: ArchivePeer, transaction_uid: str, *, poll_after: float, production_timeout: float,
                 max_unanswered_polls: int) -> None:
        self.archive = archive
        self.transaction_uid = transaction_uid
        self.poll_after = poll_after
        self.production_timeout = production_timeout
        self.max_unanswered_polls = max_unanswered_polls
        self.events: queue.Queue = queue.Queue()
        self.channels: list[Association] = []

    def __enter__(self) -> Creation:
        return self

    def __exit__(self, *exc) -> None:
        for channel in self.channels:
            release(channel)

    @property
    def current(self) -> Association | None:
        return self.channels[-1] if self.channels else None

    def _on_event(self, event):
        try:
            info = event.event_information
        except Exception:  # noqa: BLE001 - an undecodable report is answered, then ignored
            log.exception("undecodable N-EVENT-REPORT")
            return 0x0110, None
        self.events.put(("event", event.event_type, info, event.assoc))
        return 0x0000, None

    def _on_close(self, event) -> None:
        self.events.put(("closed", None, None, event.assoc))

    def action(self, action_type: int, info: Dataset) -> Dataset:
        """Send one N-ACTION on a fresh association; its status (ArchiveError if there is none)."""
        archive = self.archive
        assoc = archive.associate([INVENTORY_CREATION], "Inventory Creation",
                                  handlers=[(evt.EVT_N_EVENT_REPORT, self._on_event),
                                            (evt.EVT_CONN_CLOSE, self._on_close)])
        assoc.network_timeout = None  # waiting for events is not idleness; polls check liveness
        self.channels.append(assoc)
        if len(self.channels) > 4:  # long gone quiet: drop the oldest (a release could wait on an event)
            oldest = self.channels.pop(0)
            if oldest.is_established:
                oldest.abort()
        try:
            with held(assoc):
                status, _ = assoc.send_n_action(info, action_type, INVENTORY_CREATION, STORAGE_MANAGEMENT_INSTANCE,
                                                msg_id=archive.next_msg_id())
        except RuntimeError as exc:
            raise ArchiveError(f"{archive.name}: N-ACTION {action_type}: {exc}") from exc
        if status.get("Status") is None:
            raise NoAnswer(f"{archive.name}: no answer to N-ACTION {action_type} (aborted or timed out)")
        return status

    def status_request(self) -> Dataset:
        info = Dataset()
        info.TransactionUID = self.transaction_uid
        return self.action(REQUEST_STATUS, info)

    def cancel_quietly(self) -> None:
        info = Dataset()
        info.TransactionUID = self.transaction_uid
        info.RetainInstances = "N"
        try:
            self.action(CANCEL, info)
        except ArchiveError as exc:
            log.warning("could not cancel inventory %s: %s", self.transaction_uid, exc)

    def until_terminated(self) -> Termination:
        """Wait for the end of production, polling when the events go quiet or their association
        closes; ArchiveError after production_timeout (the transaction is then canceled)."""
        peer = self.archive.name
        deadline = time.monotonic() + self.production_timeout
        heard = time.monotonic()
        unanswered = 0  # status requests since the last event
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.cancel_quietly()
                raise ArchiveError(f"{peer}: no inventory after {self.production_timeout:g} s "
                                   f"(transaction {self.transaction_uid} canceled)")
            wake = min(deadline, heard + self.poll_after)  # a poll is due then
            try:
                kind, event_type, info, assoc = self.events.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                kind = "quiet"
            if kind == "event" and str(info.get("TransactionUID") or "") == self.transaction_uid:
                heard = time.monotonic()
                unanswered = 0
                end = self._event(event_type, info)
                if end is not None:
                    return end
                continue
            if kind == "event" or (kind == "closed" and assoc is not self.current):
                continue  # another transaction's, or an old association
            # Quiet for poll_after, or the association events come on is gone: ask.
            unanswered += 1
            if unanswered > self.max_unanswered_polls:
                raise ArchiveError(f"{peer}: {unanswered - 1} Inventory status requests in a row got no "
                                   f"status event (transaction {self.transaction_uid})")
            self.archive.say("no news from the archive; asking for the inventory's status")
            try:
                status = self.status_request()
            except ArchiveError as exc:  # unreachable or no answer: maybe passing, up to the limit
                if unanswered >= self.max_unanswered_polls:
                    raise
                log.warning("status request failed: %s", exc)
            else:
                if status.Status != 0x0000:  # e.g. the archive no longer knows the transaction
                    raise ArchiveError(f"{peer}: Inventory status request refused: 0x{status.Status:04X}"
                                       f"{status_comment(status)} (transaction {self.transaction_uid})")
            heard = time.monotonic()

    def _event(self, event_type: int, info: Dataset) -> Termination | None:
        status = str(info.get("TransactionStatus") or "").strip().upper()
        comment = str(info.get("TransactionStatusComment") or "")
        records = info.get("TotalNumberOfStudyRecords")
        records = int(records) if records not in (None, "") else None
        if event_type == STATUS_EVENT:
            self.archive.say(f"Inventory production {status or '?'}: "
                             f"{'?' if records is None else records} study records so far")
            if status in ("PROCESSING", "PAUSED", ""):
                return None
            return Termination(STATUS_EVENT, status, comment, "", records)
        if event_type == TERMINATED_WITH:
            return Termination(TERMINATED_WITH, status, comment, str(info.get("ReferencedSOPInstanceUID") or ""),
                                records)
        if event_type == TERMINATED_WITHOUT:
            return Termination(TERMINATED_WITHOUT, status, comment, "", records)
        log.warning("ignoring N-EVENT-REPORT type %s", event_type)
        return None
