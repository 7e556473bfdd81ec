"""Sending Inventory Creation N-EVENT-REPORTs back on the SCU's own association.

One thread sends them all, in order: pynetdicom's send_* waits until the association's reactor is
idle (so a report never overtakes the N-ACTION response that caused it), then waits for the
N-EVENT-REPORT-RSP. Two sends on one association at once would steal each other's responses.
Limitation inherited from pynetdicom: if the SCU sends a request while a report is awaiting its
response, the acceptor takes the request for the response and aborts.
"""

from __future__ import annotations

import logging
import queue
import threading

from pydicom.dataset import Dataset

from refarchive.constants import INVENTORY_CREATION, STORAGE_MANAGEMENT_INSTANCE
from refarchive.faults import Faults

log = logging.getLogger("refarchive.events")


class Notifier:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="refarchive-events", daemon=True)
        self._thread.start()

    def send(self, assoc, event_type: int, info: Dataset) -> None:
        self._queue.put((assoc, event_type, info))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued report has been sent (or dropped)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if isinstance(job, threading.Event):
                job.set()
                continue
            assoc, event_type, info = job
            if assoc is None or not assoc.is_established:
                log.info("event %d for %s dropped: the association is gone", event_type, info.TransactionUID)
                continue
            if self.faults.should_abort():
                log.warning("fault: aborting the association instead of sending event %d", event_type)
                assoc.abort()
                continue
            try:
                result, _ = assoc.send_n_event_report(info, event_type, INVENTORY_CREATION,
                                                      STORAGE_MANAGEMENT_INSTANCE)
                log.info("event %d (%s) for %s: peer answered %s", event_type, info.get("TransactionStatus"),
                         info.TransactionUID, getattr(result, "Status", None))
            except Exception:  # noqa: BLE001 - a peer going away must not stop the sender
                log.exception("sending event %d failed", event_type)
