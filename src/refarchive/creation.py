"""Inventory Creation SCP (PS3.4 KK.2): N-ACTION 11 Initiate, 12 Request Status, 13 Cancel,
14 Pause, 15 Resume, each with a Transaction UID; production runs in a background thread, and
N-EVENT-REPORTs go back on the association that last spoke about the transaction, while it is open:
- 12 Inventory Status: PROCESSING when production starts, PAUSED once production has stopped after a
  pause (the record then in production finished and counted), PROCESSING on resume, every Requested
  Status Interval minutes, and in reply to Request Status;
- 11 Inventory Terminated with Instances: root Referenced SOP Class/Instance UID, Retrieve AE Title,
  Total Number of Study Records; Transaction Status COMPLETE, CANCELED (cancel with Retain
  Instances Y) or FAILURE (production stopped early, inventory kept as PARTIAL);
- 13 Inventory Terminated without Instances: FAILURE, or CANCELED with Retain Instances N.
Statuses: 0000; B010 with the unsupported scope keys in (0000,1005) (left out of the selection);
0110 with an Error Comment for a missing/duplicate/unknown Transaction UID, a bad Inventory Level,
a missing Retain Instances or a finished transaction; 0213 when max_transactions are already running;
0123 for another action type; 0112 for another SOP instance than the well-known one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from refarchive import dimse_patch  # noqa: F401  (Attribute Identifier List in N-ACTION responses)
from refarchive.constants import INVENTORY_STORAGE, LEVELS, STORAGE_MANAGEMENT_INSTANCE
from refarchive.faults import Faults
from refarchive.holdings import Holdings
from refarchive.inventory_build import BuiltInventory, InventoryBuilder, InventoryRequest, Stop
from refarchive.inventory_store import InventoryStore
from refarchive.notifier import Notifier
from refarchive.responses import status
from refarchive.scope import Scope

log = logging.getLogger("refarchive.creation")

INITIATE, REQUEST_STATUS, CANCEL, PAUSE, RESUME = 11, 12, 13, 14, 15
TERMINATED_WITH, STATUS_EVENT, TERMINATED_WITHOUT = 11, 12, 13
ACTIVE = ("PROCESSING", "PAUSED")


@dataclass
class Transaction:
    uid: str
    request: InventoryRequest
    assoc: object  # where events go: the association that last acted on this transaction
    interval: float | None = None  # seconds between unsolicited status reports
    status: str = "PROCESSING"
    comment: str = ""
    result: BuiltInventory | None = None
    cancel: bool | None = None  # Retain Instances of a pending cancel
    builder: InventoryBuilder | None = None
    running: threading.Event = field(default_factory=threading.Event)  # cleared while paused
    done: threading.Event = field(default_factory=threading.Event)
    last_report: float = field(default_factory=time.monotonic)

    @property
    def records(self) -> int:
        if self.result is not None:
            return self.result.total_records
        return self.builder.records if self.builder else 0


class CreationService:
    def __init__(self, holdings: Holdings, store: InventoryStore, notifier: Notifier, faults: Faults, *,
                 ae_title: str, record_limit: int, fanout: int, max_transactions: int = 4,
                 minute: float = 60.0) -> None:
        self.holdings = holdings
        self.store = store
        self.notifier = notifier
        self.faults = faults
        self.ae_title = ae_title
        self.record_limit = record_limit
        self.fanout = fanout
        self.max_transactions = max_transactions
        self.minute = minute  # seconds per "minute" of Requested Status Interval (tests shrink it)
        self.transactions: dict[str, Transaction] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- N-ACTION ----------------------------------------------------------------------------------

    def n_action(self, event) -> tuple[Dataset | int, Dataset | None]:
        if str(event.request.RequestedSOPInstanceUID) != STORAGE_MANAGEMENT_INSTANCE:
            return status(0x0112, "Requested SOP Instance must be 1.2.840.10008.5.1.4.1.1.201.1.1"), None
        action = event.action_type
        handler = {INITIATE: self._initiate, REQUEST_STATUS: self._request_status, CANCEL: self._cancel,
                   PAUSE: self._pause, RESUME: self._resume}.get(action)
        if handler is None:
            return status(0x0123, f"no such action type {action}"), None
        info = event.action_information if event.request.ActionInformation is not None else Dataset()
        log.info("N-ACTION %s from %s for %s", action, event.assoc.requestor.ae_title, info.get("TransactionUID"))
        return handler(event, info), None

    def _initiate(self, event, info: Dataset) -> Dataset | int:
        uid = str(info.get("TransactionUID") or "")
        level = str(info.get("InventoryLevel") or "")
        if not uid:
            return status(0x0110, "Transaction UID (0008,1195) is required")
        if level not in LEVELS:
            return status(0x0110, "Inventory Level must be STUDY, SERIES or INSTANCE")
        scope, unsupported = Scope.from_sequence(info.get("ScopeOfInventorySequence"))
        interval = info.get("RequestedStatusInterval")
        with self._lock:
            if uid in self.transactions:
                return status(0x0110, "Transaction UID already used")
            if sum(t.status in ACTIVE for t in self.transactions.values()) >= self.max_transactions:
                return status(0x0213, f"{self.max_transactions} inventories already in production")
            request = InventoryRequest(level=level, scope=scope, purpose=str(info.get("InventoryPurpose") or ""),
                                       transaction_uid=uid, record_limit=self.record_limit, fanout=self.fanout)
            tx = Transaction(uid, request, event.assoc, interval * self.minute if interval else None)
            tx.running.set()
            self.transactions[uid] = tx
        threading.Thread(target=self._produce, args=(tx,), name=f"inventory-{uid[-12:]}", daemon=True).start()
        if unsupported:
            return status(0xB010, "scope keys not supported for matching were ignored", unsupported)
        return 0x0000

    def _known(self, event, info: Dataset) -> Transaction | Dataset:
        tx = self.transactions.get(str(info.get("TransactionUID") or ""))
        if tx is None:
            return status(0x0110, "unknown Transaction UID")
        tx.assoc = event.assoc
        return tx

    def _request_status(self, event, info: Dataset) -> Dataset | int:
        tx = self._known(event, info)
        if isinstance(tx, Dataset):
            return tx
        if info.get("RequestedStatusInterval"):
            tx.interval = info.RequestedStatusInterval * self.minute
        self._report(tx)
        return 0x0000

    def _cancel(self, event, info: Dataset) -> Dataset | int:
        tx = self._known(event, info)
        if isinstance(tx, Dataset):
            return tx
        retain = str(info.get("RetainInstances") or "")
        if retain not in ("Y", "N"):
            return status(0x0110, "Retain Instances (0008,0415) Y or N is required")
        if tx.status not in ACTIVE:
            return status(0x0110, f"transaction already ended ({tx.status})")
        tx.cancel = retain == "Y"
        tx.running.set()  # a paused producer must wake up to stop
        return 0x0000

    def _pause(self, event, info: Dataset) -> Dataset | int:
        tx = self._known(event, info)
        if isinstance(tx, Dataset):
            return tx
        if tx.status not in ACTIVE:
            return status(0x0110, f"transaction already ended ({tx.status})")
        if tx.status == "PROCESSING":
            tx.status = "PAUSED"  # before the producer can see the pause: its report must say PAUSED
            tx.running.clear()  # the producer reports PAUSED once it has stopped (`_checkpoint`)
        return 0x0000

    def _resume(self, event, info: Dataset) -> Dataset | int:
        tx = self._known(event, info)
        if isinstance(tx, Dataset):
            return tx
        if tx.status not in ACTIVE:
            return status(0x0110, f"transaction already ended ({tx.status})")
        if tx.status == "PAUSED":
            tx.status = "PROCESSING"
            tx.running.set()
            self._report(tx)
        return 0x0000

    # -- production --------------------------------------------------------------------------------

    def _produce(self, tx: Transaction) -> None:
        self._report(tx)
        tx.builder = InventoryBuilder(self.holdings, self.store, tx.request, ae_title=self.ae_title,
                                      checkpoint=lambda n: self._checkpoint(tx, n))
        try:
            result = tx.builder.run()
        except Stop as stop:  # nothing kept
            self._end(tx, stop.completion if stop.completion == "CANCELED" else "FAILURE", stop.comment)
            return
        except Exception as exc:  # noqa: BLE001 - any production error is a FAILURE for the SCU
            log.exception("inventory production failed")
            self._end(tx, "FAILURE", f"production failed: {exc}"[:1024])
            return
        tx.result = result
        outcome = {"COMPLETE": "COMPLETE", "CANCELED": "CANCELED"}.get(result.completion, "FAILURE")
        self._end(tx, outcome, result.comment)

    def _checkpoint(self, tx: Transaction, records: int) -> None:
        faults = self.faults
        if faults.creation_study_delay:
            time.sleep(faults.creation_study_delay)
        if not tx.running.is_set():
            # Reported here, not when the pause was asked: the record in production then is finished
            # first, and the report must count it, as every later one will.
            self._report(tx)
        while not tx.running.wait(0.05):
            self._check_stopping()
        self._check_stopping()
        if tx.cancel is not None:
            raise Stop("CANCELED", tx.cancel, "canceled at the SCU's request")
        if faults.creation_fail_after is not None and records >= faults.creation_fail_after:
            raise Stop("FAILURE", False, f"injected failure after {records} study records")
        if faults.creation_partial_after is not None and records >= faults.creation_partial_after:
            raise Stop("PARTIAL", True, f"production stopped after {records} study records: inventory PARTIAL")
        if tx.interval and time.monotonic() - tx.last_report >= tx.interval:
            self._report(tx)

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise Stop("FAILURE", False, "the archive is stopping")

    def _end(self, tx: Transaction, outcome: str, comment: str) -> None:
        tx.status, tx.comment = outcome, comment
        info = self._info(tx)
        if tx.result is not None:
            info.ReferencedSOPClassUID = INVENTORY_STORAGE
            info.ReferencedSOPInstanceUID = tx.result.root_uid
            info.RetrieveAETitle = self.ae_title
            info.TotalNumberOfStudyRecords = tx.result.total_records
            event_type = TERMINATED_WITH
        else:
            event_type = TERMINATED_WITHOUT
        log.info("inventory %s ended %s (%s records) %s", tx.uid, outcome, tx.records, comment)
        if not self._stopping.is_set():
            self.notifier.send(tx.assoc, event_type, info)
        tx.done.set()

    def _info(self, tx: Transaction) -> Dataset:
        info = Dataset()
        info.TransactionUID = tx.uid
        info.TransactionStatus = tx.status
        if tx.comment:
            info.TransactionStatusComment = tx.comment
        return info

    def _report(self, tx: Transaction) -> None:
        """Event 12, Inventory Status, with the records produced so far."""
        tx.last_report = time.monotonic()
        info = self._info(tx)
        info.TotalNumberOfStudyRecords = tx.records
        self.notifier.send(tx.assoc, STATUS_EVENT, info)

    # -- for the embedding program -----------------------------------------------------------------

    def wait(self, uid: str, timeout: float = 30.0) -> Transaction:
        tx = self.transactions[uid]
        if not tx.done.wait(timeout):
            raise TimeoutError(f"inventory {uid} still {tx.status} after {timeout} s")
        return tx

    def start(self) -> None:
        self._stopping.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for tx in list(self.transactions.values()):
            tx.running.set()
            tx.done.wait(timeout)
