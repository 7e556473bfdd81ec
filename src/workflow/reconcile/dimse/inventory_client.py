"""Inventory path client (DICOM Sup 223): what an archive holds, from its own Inventory.

    client = InventoryHoldings("WFM", "PACS", host, port, timeout=30, directory=workdir, retrieve="get",
                               progress=print)
    inventory = client.fetch(HoldingsScope(since=date(2024, 1, 1)))   # RetrievedInventory
    try:
        inventory.complete, inventory.partial, inventory.completion, inventory.content_datetime
        for holding in inventory.holdings(): ...     # workflow.reconcile.rules.holdings.Holding, file order
        for uid in inventory.study_uids(): ...       # the studies it lists, cheaply
    finally:
        inventory.remove_files()

`fetch(scope)`:
1. Inventory FIND (PS3.4 JJ) for inventories with Inventory Level INSTANCE, Inventory Completion
   Status COMPLETE and Content Date/Time within `max_age` (default 24 h) whose returned Scope of
   Inventory covers `scope` (`scope_covers`: conservative; an unknown key means "does not cover").
   FIND matches every node of a tree, so matches are grouped (Transaction UID, else Content
   Date/Time) and a group is used only once a retrieved candidate's Incorporated Inventory Instance
   Sequence accounts for every other member: its root. The most recent usable group wins.
2. Otherwise Inventory Creation (PS3.4 KK): N-ACTION 11 (INSTANCE level, the scope, a fresh
   Transaction UID, Requested Status Interval) on the well-known Storage Management SOP Instance,
   then N-EVENT-REPORTs 12 (status), 11 (terminated with instances) and 13 (terminated without).
   After `poll_after` seconds without an event, or as soon as the event association closes, it polls
   with N-ACTION 12. Every N-ACTION goes on a *fresh* association: the archive then sends its events
   there (it sends events on the association that last spoke about the transaction), and no event can
   be in flight on it when the request goes out; pynetdicom would take such an event for the
   response and abort (both ends). A status event saying the transaction ended, without the root
   UID of event 11, is followed by an Inventory FIND on the Transaction UID.
3. Retrieval of the root, then of every incorporated instance (the root's nested list, plus any a
   node adds), `uid_batch` UIDs per request: C-GET with this client as Storage SCP on the same
   association (SCP role negotiated for Inventory Storage), or C-MOVE to our own AE title with the
   instances arriving at `receiver` (`InventoryReceiver`: `expect(uids)`, `wait(uid, timeout)`;
   `StorageReceiver` is a small one). Each instance's encoded data set is written as is (no file
   meta, no pydicom decoding) to a file in `directory`; `workflow.reconcile.dimse.inventory_stream` reads it.

Honesty about completion. ArchiveError (the same class as holdings_query's) when: the archive cannot
be reached or refuses; production ends FAILURE or CANCELED without instances, or CANCELED with
them; production exceeds `production_timeout`; a retrieval fails, is aborted or leaves an instance
out; a node is unreadable, not INSTANCE level, says FAILURE or CANCELED; or the records of the tree
do not add up to the root's Total Number of Study Records. A PARTIAL tree (production stopped early
but kept what it made; the archive's event 11 then says Transaction Status FAILURE) is returned with
`partial` True: it speaks only for the studies it lists (`study_uids()`); the caller reports other
expected studies as ARCHIVE_ERROR, never missing. A COMPLETE one speaks for every study in the
scope asked; note `content_datetime`: instances stored after it cannot be in it.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, build_role, evt
from pynetdicom.association import Association

from workflow.reconcile.dimse.archive_probe import INVENTORY_CREATION, INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE
from workflow.reconcile.dimse.holdings_query import ArchiveError, HoldingsScope, _hold_reactor, _release_reactor
from workflow.reconcile.dimse.inventory_stream import (
    InventoryFormatError,
    InventoryHeader,
    StudyRecord,
    open_inventory,
)
from workflow.dimse.nodelay import NoDelayAE, NoDelayAssociationServer
from workflow.reconcile.rules.holdings import Holding

log = logging.getLogger("workflow.inventory_client")

INVENTORY_STORAGE = "1.2.840.10008.5.1.4.1.1.201.1"
STORAGE_MANAGEMENT_INSTANCE = "1.2.840.10008.5.1.4.1.1.201.1.1"
VERIFICATION = "1.2.840.10008.1.1"
# Syntaxes the reader handles; Explicit first: the archive can then send stored bytes unchanged.
INVENTORY_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))

INITIATE, REQUEST_STATUS, CANCEL = 11, 12, 13
TERMINATED_WITH, STATUS_EVENT, TERMINATED_WITHOUT = 11, 12, 13
POLL_AFTER = 20.0  # seconds without an event before asking for the production's status
# Worst first wins when the nodes of a tree disagree.
_COMPLETION_RANK = {"COMPLETE": 0, "PARTIAL": 1, "CANCELED": 2, "FAILURE": 3}
_PENDING = (0xFF00, 0xFF01)


class NotAccepted(ArchiveError):
    """The archive associates but refuses a presentation context this step needs."""


# -- receiving instances ---------------------------------------------------------------------------


class ReceivedInstance(NamedTuple):
    path: Path
    transfer_syntax: str


class InventoryReceiver(Protocol):
    """Where C-MOVEd Inventory instances arrive (the product's Storage SCP, or StorageReceiver)."""

    def expect(self, sop_uids: Iterable[str]) -> None:
        """These instances are about to be sent: keep them."""

    def wait(self, sop_uid: str, timeout: float) -> ReceivedInstance:
        """The file the instance was written to; TimeoutError if it does not arrive in time."""


def write_received(directory: str | os.PathLike, event) -> ReceivedInstance:
    """Write a C-STORE request's encoded data set, as received, to a new file in `directory`."""
    fd, name = tempfile.mkstemp(prefix="inventory-", suffix=".raw", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(event.request.DataSet.getbuffer())
    except BaseException:
        Path(name).unlink(missing_ok=True)  # no half-written file left behind (a full disk)
        raise
    return ReceivedInstance(Path(name), str(event.context.transfer_syntax))


class StorageReceiver:
    """A minimal Storage SCP for Inventory Storage, as the C-MOVE destination: instances announced
    with expect() are written to `directory`; any other is refused (0124)."""

    def __init__(self, ae_title: str, directory: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0,
                 transfer_syntaxes: Iterable[str] = INVENTORY_SYNTAXES, timeout: float = 30.0) -> None:
        self.ae_title = ae_title
        self.directory = Path(directory)
        self.host = host
        self._port = port
        self._syntaxes = list(transfer_syntaxes)
        self._timeout = timeout
        self._expected: set[str] = set()
        self._received: dict[str, ReceivedInstance] = {}
        self._failed: dict[str, str] = {}
        self._changed = threading.Condition()
        self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> StorageReceiver:
        ae = NoDelayAE(ae_title=self.ae_title)
        ae.add_supported_context(INVENTORY_STORAGE, self._syntaxes)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        self._server = ae.make_server((self.host, self._port), evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
                                      server_class=NoDelayAssociationServer)
        ae._servers.append(self._server)  # what AE.start_server does (it takes no server class)
        threading.Thread(target=self._server.serve_forever, name=f"receiver-{self.ae_title}", daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._port = server.server_address[1]
            server.shutdown()  # also closes the socket

    def __enter__(self) -> StorageReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def expect(self, sop_uids: Iterable[str]) -> None:
        with self._changed:
            self._expected.update(sop_uids)

    def wait(self, sop_uid: str, timeout: float) -> ReceivedInstance:
        with self._changed:
            if not self._changed.wait_for(lambda: sop_uid in self._received or sop_uid in self._failed, timeout):
                raise TimeoutError(f"Inventory instance {sop_uid} not received within {timeout:g} s")
            if sop_uid in self._failed:
                raise OSError(self._failed.pop(sop_uid))
            self._expected.discard(sop_uid)
            return self._received.pop(sop_uid)

    def _on_store(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._changed:
            if uid not in self._expected:
                return 0x0124  # Refused: not asked for
        try:
            received = write_received(self.directory, event)
        except OSError as exc:
            with self._changed:
                self._failed[uid] = f"cannot write {uid}: {exc}"
                self._changed.notify_all()
            return 0xA700
        with self._changed:
            self._received[uid] = received
            self._changed.notify_all()
        return 0x0000


# -- the result ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryNode:
    sop_uid: str
    path: Path
    transfer_syntax: str
    header: InventoryHeader
    size: int


@dataclass
class RetrievedInventory:
    """A retrieved Inventory tree, on disk. Read it with studies() / holdings() / study_uids()
    (one pass each, file by file); remove_files() when done."""

    root_uid: str
    nodes: list[InventoryNode]  # the root first
    completion: str  # the worst Inventory Completion Status over the tree
    created: bool  # requested now (Inventory Creation) rather than found
    transaction_status: str = ""  # Transaction Status reported at the end of production ("" if found)
    transaction_comment: str = ""

    @property
    def root(self) -> InventoryHeader:
        return self.nodes[0].header

    @property
    def complete(self) -> bool:
        """The inventory speaks for every study in the scope asked: an expected study absent is missing."""
        return self.completion == "COMPLETE"

    @property
    def partial(self) -> bool:
        """It speaks only for the studies it lists; others are unknown (ARCHIVE_ERROR), not missing."""
        return self.completion == "PARTIAL"

    @property
    def transaction_uid(self) -> str:
        return self.root.transaction_uid

    @property
    def total_records(self) -> int:
        return sum(node.header.records_in_instance or 0 for node in self.nodes)

    @property
    def content_datetime(self) -> datetime | None:
        """When production started: instances stored later cannot be listed."""
        return dicom_datetime(self.root.content_date, self.root.content_time)

    def studies(self) -> Iterator[StudyRecord]:
        for node in self.nodes:
            with _NodeReader(node) as inv:
                yield from inv.studies()

    def holdings(self) -> Iterator[Holding]:
        """Every instance listed, in file order (not key order). A study may appear in several
        records, so an instance may come more than once: the holdings spool merges duplicates."""
        for study in self.studies():
            yield from study.holdings

    def study_uids(self) -> Iterator[str]:
        """The Study Instance UIDs listed (a study may appear in several records)."""
        for node in self.nodes:
            with _NodeReader(node) as inv:
                yield from inv.study_uids()

    def remove_files(self) -> None:
        for node in self.nodes:
            node.path.unlink(missing_ok=True)


class _NodeReader:
    """open_inventory as a context manager whose format errors are ArchiveErrors, also mid-stream."""

    def __init__(self, node: InventoryNode) -> None:
        self.node = node

    def __enter__(self):
        try:
            self.inv = open_inventory(self.node.path, self.node.transfer_syntax)
        except (InventoryFormatError, OSError) as exc:
            raise ArchiveError(f"Inventory instance {self.node.sop_uid} unreadable: {exc}") from exc
        return self.inv

    def __exit__(self, exc_type, exc, tb) -> None:
        self.inv.close()
        if isinstance(exc, InventoryFormatError):
            raise ArchiveError(f"Inventory instance {self.node.sop_uid} unreadable: {exc}") from exc


# -- scope -----------------------------------------------------------------------------------------


def scope_item(scope: HoldingsScope) -> Dataset | None:
    """The Scope of Inventory Sequence item (PS3.3 C.38.2-1) for `scope`; None: universal."""
    item, general = Dataset(), Dataset()
    uids = list(scope.study_uids)
    if len(uids) == 1:
        general.StudyInstanceUID = uids[0]
    elif uids:
        seq = []
        for uid in uids:
            one = Dataset()
            one.StudyInstanceUID = uid
            seq.append(one)
        item.ListOfUIDMatchingSequence = seq
    modalities = [m.strip().upper() for m in scope.modalities if m.strip()]
    if modalities:
        general.ModalitiesInStudy = modalities
        if len(modalities) > 1:
            item.ExtendedMatchingMechanisms = "MULTIPLE_VALUE"
    if scope.since:
        begin, end = Dataset(), Dataset()
        begin.StudyDate = f"{scope.since:%Y%m%d}"
        end.StudyDate = ""  # open-ended
        item.RangeMatchingSequence = [begin, end]
    if len(general):
        item.GeneralMatchingSequence = [general]
    return item if len(item) else None


def _values(elem) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def scope_covers(items, scope: HoldingsScope) -> bool:
    """Does an inventory with this Scope of Inventory Sequence list every study `scope` selects?
    Conservative: a key or mechanism not understood here means no."""
    if items is None:
        return False  # not returned: unknown
    if len(items) == 0:
        return True
    if len(items) > 1:
        return False
    ours_uids = set(scope.study_uids)
    ours_modalities = {m.strip().upper() for m in scope.modalities if m.strip()}
    for elem in items[0]:
        keyword = elem.keyword
        if keyword == "SpecificCharacterSet":
            continue
        if keyword == "ExtendedMatchingMechanisms":
            if set(_values(elem)) - {"MULTIPLE_VALUE"}:
                return False
        elif keyword == "ListOfUIDMatchingSequence":
            listed = set()
            for one in elem.value:
                if any(e.keyword != "StudyInstanceUID" for e in one):
                    return False
                listed.update(_values(one["StudyInstanceUID"]) if "StudyInstanceUID" in one else [])
            if not ours_uids or not ours_uids <= listed:
                return False
        elif keyword == "RangeMatchingSequence":
            if not _range_covers(elem.value, scope.since):
                return False
        elif keyword == "GeneralMatchingSequence":
            for general in elem.value:
                if not _general_covers(general, ours_uids, ours_modalities):
                    return False
        else:
            return False
    return True


def _range_covers(value, since: date | None) -> bool:
    if len(value) != 2:
        return False
    begin, end = value
    for tag in set(begin.keys()) | set(end.keys()):
        low = _values(begin[tag]) if tag in begin else []
        high = _values(end[tag]) if tag in end else []
        keyword = (begin[tag] if tag in begin else end[tag]).keyword
        if keyword != "StudyDate" or high:
            return False  # only an open-ended Study Date range is understood
        if low and (since is None or f"{since:%Y%m%d}" < low[0]):
            return False
    return True


def _general_covers(general: Dataset, ours_uids: set[str], ours_modalities: set[str]) -> bool:
    for key in general:
        given = _values(key) if key.VR != "SQ" else ["?"]
        if not given:
            continue  # universal matching
        if key.keyword == "StudyInstanceUID":
            if not ours_uids or not ours_uids <= set(given):
                return False
        elif key.keyword == "ModalitiesInStudy":
            if not ours_modalities or not ours_modalities <= {g.upper() for g in given}:
                return False
        else:
            return False
    return True


def dicom_datetime(da: str, tm: str) -> datetime | None:
    """DA + TM (local time, as DICOM without an offset means) as a datetime; None if unreadable."""
    da, tm = (da or "").strip(), (tm or "").strip().replace(":", "")
    try:
        day = datetime.strptime(da, "%Y%m%d")
    except ValueError:
        return None
    whole, _, fraction = tm.partition(".")
    try:
        parts = [int(whole[i:i + 2]) for i in range(0, min(len(whole), 6), 2)]
        micro = int((fraction + "000000")[:6]) if fraction else 0
        return day.replace(hour=parts[0] if parts else 0, minute=parts[1] if len(parts) > 1 else 0,
                           second=parts[2] if len(parts) > 2 else 0, microsecond=micro)
    except ValueError:
        return day


# -- Inventory FIND matches ------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryMatch:
    sop_uid: str
    transaction_uid: str
    content_date: str
    content_time: str
    level: str
    completion: str
    total_records: int | None
    covers: bool

    @property
    def content_datetime(self) -> datetime | None:
        return dicom_datetime(self.content_date, self.content_time)

    @property
    def group(self) -> tuple[str, ...]:
        """Nodes of one tree share a Transaction UID (or at least their Content Date and Time)."""
        return (self.transaction_uid,) if self.transaction_uid else (self.content_date, self.content_time)


# -- the client ------------------------------------------------------------------------------------


class InventoryHoldings:
    """An archive's holdings through its Inventory; see the module docstring. Not thread-safe."""

    def __init__(self, ae_title_local: str, remote_ae: str, host: str, port: int, timeout: float = 30.0, *,
                 directory: str | os.PathLike, retrieve: str = "get", receiver: InventoryReceiver | None = None,
                 max_age: timedelta = timedelta(hours=24), poll_after: float | None = None,
                 production_timeout: float = 6 * 3600.0, status_interval: int = 1, uid_batch: int = 50,
                 max_unanswered_polls: int = 3, transfer_syntaxes: Iterable[str] = INVENTORY_SYNTAXES,
                 progress: Callable[[str], None] | None = None) -> None:
        """timeout: seconds for connecting and for each DIMSE response. poll_after: seconds without an
        event before N-ACTION 12 (default POLL_AFTER). status_interval: Requested Status Interval, minutes. The receiver
        is required with retrieve="move" (its AE title must be `ae_title_local`, known to the archive)."""
        if retrieve not in ("get", "move"):
            raise ValueError('retrieve must be "get" or "move"')
        if retrieve == "move" and receiver is None:
            raise ValueError("C-MOVE needs a receiver for the instances")
        self.local_ae = ae_title_local
        self.remote_ae = remote_ae
        self.host = host
        self.port = port
        self.timeout = timeout
        self.directory = Path(directory)
        self.retrieve_mode = retrieve
        self.receiver = receiver
        self.max_age = max_age
        self.poll_after = POLL_AFTER if poll_after is None else poll_after
        self.production_timeout = production_timeout
        self.status_interval = status_interval
        self.uid_batch = uid_batch
        self.max_unanswered_polls = max_unanswered_polls
        self.transfer_syntaxes = list(transfer_syntaxes)
        self.progress = progress
        self._ae = NoDelayAE(ae_title=ae_title_local)
        self._ae.acse_timeout = self._ae.dimse_timeout = self._ae.network_timeout = timeout
        self._ae.connection_timeout = timeout
        self._msg_id = 0

    @property
    def peer(self) -> str:
        return f"{self.remote_ae} at {self.host}:{self.port}"

    def _say(self, message: str) -> None:
        log.info(message)
        if self.progress is not None:
            self.progress(message)

    def _next_msg_id(self) -> int:
        self._msg_id = self._msg_id % 0xFFFF + 1
        return self._msg_id

    def _associate(self, abstract_syntaxes: list[str], purpose: str, *, storage_scp: bool = False,
                   handlers: list | None = None) -> Association:
        """A new association proposing `abstract_syntaxes` (and Inventory Storage with the SCP role);
        ArchiveError unless all are accepted."""
        # Verification rides along: an archive accepting none of the others would otherwise refuse or
        # abort the association (Orthanc does), and "does not accept X" is the precise message.
        contexts = [build_context(uid, [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)])
                    for uid in [*abstract_syntaxes, VERIFICATION]]
        ext_neg = []
        if storage_scp:
            contexts.append(build_context(INVENTORY_STORAGE, self.transfer_syntaxes))
            ext_neg.append(build_role(INVENTORY_STORAGE, scp_role=True))
        try:
            assoc = self._ae.associate(self.host, self.port, ae_title=self.remote_ae, contexts=contexts,
                                       ext_neg=ext_neg or None, evt_handlers=handlers or None)
        except OSError as exc:
            raise ArchiveError(f"cannot connect to {self.peer}: {exc}") from exc
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "not established (refused, aborted or no answer)"
            raise ArchiveError(f"association with {self.peer} for {purpose} {reason}")
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        missing = [uid for uid in abstract_syntaxes if uid not in accepted]
        if storage_scp and not any(str(cx.abstract_syntax) == INVENTORY_STORAGE for cx in assoc.accepted_contexts):
            missing.append(f"Inventory Storage as SCP with {'/'.join(self.transfer_syntaxes)}")
        if missing:
            assoc.release()
            raise NotAccepted(f"{self.peer} does not accept {purpose} ({', '.join(missing)})")
        return assoc

    # -- the whole procedure --

    def fetch(self, scope: HoldingsScope | None = None) -> RetrievedInventory:
        """A recent COMPLETE INSTANCE-level inventory covering `scope`, else a new one."""
        scope = scope or HoldingsScope()
        self._say(f"looking for a recent Inventory at {self.peer}")
        try:
            groups = self.find_recent(scope)
        except NotAccepted as exc:  # no Inventory FIND: Inventory Creation may still be offered
            self._say(str(exc))
            groups = []
        for group in groups:
            inventory = self._use_group(group)
            if inventory is not None:
                return inventory
        return self.create(scope)

    # -- 1. Inventory FIND --

    def find_recent(self, scope: HoldingsScope) -> list[list[InventoryMatch]]:
        """Groups of matches (nodes of one tree each) that are COMPLETE, INSTANCE level, recent and
        cover `scope`, the most recent first."""
        cutoff = datetime.now() - self.max_age
        query = Dataset()
        query.SOPClassUID = INVENTORY_STORAGE
        query.SOPInstanceUID = ""
        query.TransactionUID = ""
        query.ContentDate = f"{cutoff:%Y%m%d}-"
        query.ContentTime = ""
        query.InventoryLevel = "INSTANCE"
        query.InventoryCompletionStatus = "COMPLETE"
        query.TotalNumberOfStudyRecords = None
        query.ScopeOfInventorySequence = []
        groups: dict[tuple[str, ...], list[InventoryMatch]] = {}
        for match in self.find(query, scope):
            when = match.content_datetime
            if (match.level != "INSTANCE" or match.completion != "COMPLETE" or when is None or when < cutoff
                    or not match.covers):
                continue
            groups.setdefault(match.group, []).append(match)
        ordered = sorted(groups.values(), key=lambda g: max(m.content_datetime for m in g), reverse=True)
        self._say(f"{len(ordered)} recent COMPLETE INSTANCE-level Inventory(ies) cover the scope")
        return ordered

    def find(self, query: Dataset, scope: HoldingsScope | None = None) -> list[InventoryMatch]:
        """Inventory FIND; `covers` tells whether each match's Scope of Inventory covers `scope`."""
        assoc = self._associate([INVENTORY_FIND], "Inventory FIND")
        try:
            return [self._match(ident, scope or HoldingsScope()) for ident in self._find(assoc, query)]
        finally:
            _release(assoc)

    def _find(self, assoc: Association, query: Dataset) -> list[Dataset]:
        strays = _StrayCounter(assoc)
        _hold_reactor(assoc)
        try:
            responses = assoc.send_c_find(query, INVENTORY_FIND, msg_id=self._next_msg_id())
        except RuntimeError as exc:
            _release_reactor(assoc)
            raise ArchiveError(f"{self.peer}: {exc}") from exc
        matches = []
        for status, ident in responses:
            code = status.get("Status")
            if code is None:
                raise ArchiveError(f"{self.peer}: Inventory FIND aborted or timed out")
            if code in _PENDING:
                if ident is None:
                    raise ArchiveError(f"{self.peer}: undecodable Inventory FIND response")
                matches.append(ident)
            elif code != 0x0000:
                raise ArchiveError(f"{self.peer}: Inventory FIND status 0x{code:04X}{_comment(status)}")
        if strays.count:
            # a match lost to pynetdicom's reactor: the list may be short (cf. holdings_query)
            raise ArchiveError(f"{self.peer}: an Inventory FIND response was lost locally; answer incomplete")
        return matches

    def _match(self, ident: Dataset, scope: HoldingsScope) -> InventoryMatch:
        total = ident.get("TotalNumberOfStudyRecords")
        return InventoryMatch(
            sop_uid=str(ident.get("SOPInstanceUID") or ""), transaction_uid=str(ident.get("TransactionUID") or ""),
            content_date=str(ident.get("ContentDate") or ""), content_time=str(ident.get("ContentTime") or ""),
            level=str(ident.get("InventoryLevel") or "").strip().upper(),
            completion=str(ident.get("InventoryCompletionStatus") or "").strip().upper(),
            total_records=int(total) if total not in (None, "") else None,
            covers=scope_covers(ident.get("ScopeOfInventorySequence"), scope))

    def _use_group(self, group: list[InventoryMatch]) -> RetrievedInventory | None:
        """The group's tree, once a candidate proves to be its root; None if none does."""
        members = {m.sop_uid for m in group}
        below: set[str] = set()
        with _Retrieval(self) as retrieval:
            for candidate in sorted(group, key=lambda m: -(m.total_records or 0)):
                if candidate.sop_uid in below:
                    continue
                node = retrieval.fetch([candidate.sop_uid])[0]
                subtree = set(node.header.incorporated_uids())
                if members - subtree - {candidate.sop_uid}:
                    below |= subtree  # a subtree of another node, or one of several trees
                    node.path.unlink(missing_ok=True)
                    continue
                self._say(f"using Inventory {candidate.sop_uid} of {candidate.content_datetime:%Y-%m-%d %H:%M:%S}"
                          f" ({candidate.total_records} study records)")
                return self._finish(retrieval, node, created=False)
        self._say("no root found among the nodes of a recent Inventory; skipping it")
        return None

    # -- 2. Inventory Creation --

    def create(self, scope: HoldingsScope | None = None) -> RetrievedInventory:
        """Request a new INSTANCE-level inventory of `scope`, wait for it and retrieve it."""
        scope = scope or HoldingsScope()
        transaction_uid = generate_uid()
        info = Dataset()
        info.TransactionUID = transaction_uid
        item = scope_item(scope)
        info.ScopeOfInventorySequence = [item] if item is not None else []
        info.InventoryPurpose = "reconciliation"
        info.InventoryLevel = "INSTANCE"
        info.RequestedStatusInterval = self.status_interval
        with _Creation(self, transaction_uid) as creation:
            status = self._initiate(creation, info)
            code = status.get("Status")
            if code == 0xB010:
                self._say("the archive ignored some scope keys: the inventory covers more than asked")
            elif code != 0x0000:
                raise ArchiveError(f"{self.peer} refused Inventory Creation: status "
                                   f"0x{code:04X}{_comment(status)}")
            self._say(f"requested an Inventory from {self.peer} (transaction {transaction_uid})")
            end = creation.until_terminated()
        if end.status == "CANCELED":
            raise ArchiveError(f"{self.peer}: Inventory production was canceled{_colon(end.comment)}")
        if end.event == TERMINATED_WITHOUT:
            raise ArchiveError(f"{self.peer}: Inventory production ended {end.status} without an inventory"
                               f"{_colon(end.comment)}")
        root_uid = end.root_uid or self._root_of_transaction(transaction_uid, end)
        self._say(f"Inventory {root_uid} produced ({end.status}, {end.records} study records)")
        with _Retrieval(self) as retrieval:
            node = retrieval.fetch([root_uid])[0]
            return self._finish(retrieval, node, created=True, transaction=end)

    def _initiate(self, creation: _Creation, info: Dataset) -> Dataset:
        """N-ACTION 11. If its answer is lost (the association dropped), the request may or may not
        have arrived: a status request on the Transaction UID tells, and only an unknown transaction
        is initiated again."""
        try:
            return creation.action(INITIATE, info)
        except _NoAnswer as exc:
            self._say(f"{exc}; asking whether the request arrived")
        status = creation.status_request()
        if status.Status == 0x0000:
            return status
        return creation.action(INITIATE, info)

    def _root_of_transaction(self, transaction_uid: str, end: _Termination) -> str:
        """After a status event said the end (the event with the root UID was lost): the node of the
        transaction's tree that no other node incorporates."""
        query = Dataset()
        query.SOPClassUID = INVENTORY_STORAGE
        query.SOPInstanceUID = ""
        query.TransactionUID = transaction_uid
        query.TotalNumberOfStudyRecords = None
        matches = [m for m in self.find(query) if m.transaction_uid == transaction_uid]
        if not matches:
            raise ArchiveError(f"{self.peer}: Inventory production ended {end.status} and no inventory of "
                               f"transaction {transaction_uid} can be found{_colon(end.comment)}")
        members = {m.sop_uid for m in matches}
        with _Retrieval(self) as retrieval:
            for candidate in sorted(matches, key=lambda m: -(m.total_records or 0)):
                node = retrieval.fetch([candidate.sop_uid])[0]
                node.path.unlink(missing_ok=True)
                if not members - set(node.header.incorporated_uids()) - {candidate.sop_uid}:
                    return candidate.sop_uid
        raise ArchiveError(f"{self.peer}: the nodes of transaction {transaction_uid} have no single root")

    # -- 3./4. retrieval --

    def retrieve(self, root_uid: str) -> RetrievedInventory:
        """Retrieve a known inventory tree by its root's SOP Instance UID."""
        with _Retrieval(self) as retrieval:
            node = retrieval.fetch([root_uid])[0]
            return self._finish(retrieval, node, created=False)

    def _finish(self, retrieval: _Retrieval, root: InventoryNode, *, created: bool,
                transaction: _Termination | None = None) -> RetrievedInventory:
        """Retrieve the rest of root's tree and check it; files are removed if it is unusable."""
        nodes = [root]
        try:
            self._retrieve_subtree(retrieval, nodes)
            inventory = RetrievedInventory(root.sop_uid, nodes, _worst(n.header.completion for n in nodes), created,
                                           transaction.status if transaction else "",
                                           transaction.comment if transaction else "")
            self._check(inventory)
        except BaseException:
            for node in nodes:
                node.path.unlink(missing_ok=True)
            raise
        what = "PARTIAL: it speaks only for the studies it lists" if inventory.partial else inventory.completion
        self._say(f"Inventory {root.sop_uid}: {len(nodes)} instance(s), {inventory.total_records} study records, "
                  f"{what}")
        return inventory

    def _retrieve_subtree(self, retrieval: _Retrieval, nodes: list[InventoryNode]) -> None:
        queued = {nodes[0].sop_uid}
        pending = []
        for uid in nodes[0].header.incorporated_uids():
            if uid not in queued:
                queued.add(uid)
                pending.append(uid)
        total = len(pending) + 1
        while pending:
            batch, pending = pending[:self.uid_batch], pending[self.uid_batch:]
            for node in retrieval.fetch(batch):
                nodes.append(node)
                for uid in node.header.incorporated_uids():  # a node may name more than the root did
                    if uid not in queued:
                        queued.add(uid)
                        pending.append(uid)
                        total += 1
            size = sum(n.size for n in nodes)
            self._say(f"retrieved {len(nodes)}/{total} Inventory instances ({size / 1e6:.1f} MB)")

    def _check(self, inventory: RetrievedInventory) -> None:
        root = inventory.root
        for node in inventory.nodes:
            if node.header.level != "INSTANCE":
                raise ArchiveError(f"{self.peer}: Inventory instance {node.sop_uid} is at {node.header.level} level, "
                                   "not INSTANCE")
        if inventory.completion in ("FAILURE", "CANCELED"):
            raise ArchiveError(f"{self.peer}: Inventory {inventory.root_uid} says {inventory.completion}"
                               f"{_colon(inventory.transaction_comment)}")
        if root.total_records is not None and inventory.total_records != root.total_records:
            raise ArchiveError(f"{self.peer}: Inventory {inventory.root_uid} holds {inventory.total_records} study "
                               f"records where its root says {root.total_records}: tree incomplete")


def _worst(completions: Iterable[str]) -> str:
    return max(completions, key=lambda c: _COMPLETION_RANK.get(c, len(_COMPLETION_RANK)))


def _comment(status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f" ({comment})" if comment else ""


def _colon(comment: str) -> str:
    return f": {comment}" if comment else ""


def _release(assoc: Association | None) -> None:
    if assoc is not None and assoc.is_established:
        assoc.release()


class _StrayCounter:
    """Counts responses pynetdicom's reactor took off the queue instead of the request (issue #875)."""

    def __init__(self, assoc: Association) -> None:
        self.count = 0
        serve = assoc._serve_request

        def counting(msg, context_id):
            if not msg.is_valid_request:
                self.count += 1
            serve(msg, context_id)

        assoc._serve_request = counting




# -- retrieval -------------------------------------------------------------------------------------


class _Retrieval:
    """One association retrieving Inventory instances: C-GET (we are its Storage SCP) or C-MOVE
    (to our own AE title, received by the client's receiver). Aborted, not released, after a failure:
    responses may still be pending."""

    def __init__(self, client: InventoryHoldings) -> None:
        self.client = client
        self.move = client.retrieve_mode == "move"
        self._assoc: Association | None = None
        self._expected: set[str] = set()
        self._received: dict[str, ReceivedInstance] = {}
        self._store_errors: list[str] = []

    def __enter__(self) -> _Retrieval:
        client = self.client
        if self.move:
            self._assoc = client._associate([INVENTORY_MOVE], "Inventory MOVE")
        else:
            self._assoc = client._associate([INVENTORY_GET], "Inventory GET", storage_scp=True,
                                            handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assoc, self._assoc = self._assoc, None
        for received in self._received.values():  # arrived but never asked for by fetch()
            received.path.unlink(missing_ok=True)
        if assoc is None:
            return
        if exc_type is None:
            _release(assoc)
        elif assoc.is_established:
            assoc.abort()

    def fetch(self, uids: list[str]) -> list[InventoryNode]:
        """The instances, in `uids` order, written to files with their headers read."""
        client = self.client
        what = "C-MOVE" if self.move else "C-GET"
        identifier = Dataset()
        identifier.SOPInstanceUID = uids if len(uids) > 1 else uids[0]
        self._expected = set(uids)
        if self.move:
            client.receiver.expect(uids)
        assoc = self._assoc
        _hold_reactor(assoc)
        try:
            if self.move:
                responses = assoc.send_c_move(identifier, client.local_ae, INVENTORY_MOVE, msg_id=client._next_msg_id())
            else:
                responses = assoc.send_c_get(identifier, INVENTORY_GET, msg_id=client._next_msg_id())
        except RuntimeError as exc:
            _release_reactor(assoc)
            raise ArchiveError(f"{client.peer}: Inventory {what}: {exc}") from exc
        final = None
        for status, ident in responses:
            code = status.get("Status")
            if code is None:
                raise ArchiveError(f"{client.peer}: Inventory {what} aborted or timed out "
                                   f"({len(self._received)} of {len(uids)} instances received)")
            if code not in _PENDING:
                final = (status, ident)
        if final is None:
            raise ArchiveError(f"{client.peer}: Inventory {what} ended without a final status")
        self._check_final(what, *final)
        if self._store_errors:
            raise ArchiveError(f"Inventory {what}: {self._store_errors[0]}")
        nodes: list[InventoryNode] = []
        try:
            for uid in uids:
                nodes.append(self._node(uid))
        except BaseException:
            for node in nodes:
                node.path.unlink(missing_ok=True)
            raise
        return nodes

    def _check_final(self, what: str, status: Dataset, ident: Dataset | None) -> None:
        code = status.Status
        peer = self.client.peer
        if code == 0x0000:
            return
        if code == 0xA801:
            raise ArchiveError(f"{peer} does not know Move Destination {self.client.local_ae} "
                               "(add it to the archive's AE configuration)")
        failed = ident.get("FailedSOPInstanceUIDList") if ident is not None else None
        detail = f"; failed: {failed}" if failed else ""
        if code == 0xFE00:
            raise ArchiveError(f"{peer}: Inventory {what} canceled{detail}")
        kind = "warning" if 0xB000 <= code <= 0xBFFF else "failure"
        raise ArchiveError(f"{peer}: Inventory {what} {kind} 0x{code:04X}{_comment(status)}{detail}")

    def _node(self, uid: str) -> InventoryNode:
        client = self.client
        if self.move:
            try:
                received = client.receiver.wait(uid, client.timeout)
            except (TimeoutError, OSError) as exc:
                raise ArchiveError(f"{client.peer}: Inventory C-MOVE reported success but {exc}") from exc
        else:
            received = self._received.pop(uid, None)
            if received is None:
                raise ArchiveError(f"{client.peer}: Inventory C-GET reported success but {uid} never arrived")
        try:
            with open_inventory(received.path, received.transfer_syntax) as inv:
                header = inv.header
        except (InventoryFormatError, OSError) as exc:
            received.path.unlink(missing_ok=True)
            raise ArchiveError(f"{client.peer}: Inventory instance {uid} unreadable: {exc}") from exc
        if header.sop_instance_uid != uid:
            received.path.unlink(missing_ok=True)
            raise ArchiveError(f"{client.peer}: asked for Inventory {uid}, received {header.sop_instance_uid}")
        return InventoryNode(uid, received.path, received.transfer_syntax, header, received.path.stat().st_size)

    def _on_store(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid not in self._expected or str(event.request.AffectedSOPClassUID) != INVENTORY_STORAGE:
            return 0x0124  # Refused: not asked for
        try:
            self._received[uid] = write_received(self.client.directory, event)
        except OSError as exc:
            self._store_errors.append(f"cannot write {uid}: {exc}")
            return 0xA700
        return 0x0000


# -- creation --------------------------------------------------------------------------------------


class _NoAnswer(ArchiveError):
    """An N-ACTION got no response: the association dropped or the DIMSE timeout passed."""


@dataclass(frozen=True)
class _Termination:
    event: int  # 11 or 13; 12 when a status event told the end
    status: str  # Transaction Status
    comment: str
    root_uid: str
    records: int | None


class _Creation:
    """Associations on which one Inventory Creation transaction speaks, and the events it gets.

    Each N-ACTION opens a fresh association, which then carries the events (the archive sends them
    where the transaction was last spoken about). Older ones stay open until the end: an event
    already queued for them still arrives."""

    def __init__(self, client: InventoryHoldings, transaction_uid: str) -> None:
        self.client = client
        self.transaction_uid = transaction_uid
        self.events: queue.Queue = queue.Queue()
        self.channels: list[Association] = []

    def __enter__(self) -> _Creation:
        return self

    def __exit__(self, *exc) -> None:
        for channel in self.channels:
            _release(channel)

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
        client = self.client
        assoc = client._associate([INVENTORY_CREATION], "Inventory Creation",
                                  handlers=[(evt.EVT_N_EVENT_REPORT, self._on_event),
                                            (evt.EVT_CONN_CLOSE, self._on_close)])
        assoc.network_timeout = None  # waiting for events is not idleness; polls check liveness
        self.channels.append(assoc)
        if len(self.channels) > 4:  # long gone quiet: drop the oldest (a release could wait on an event)
            oldest = self.channels.pop(0)
            if oldest.is_established:
                oldest.abort()
        _hold_reactor(assoc)
        try:
            status, _ = assoc.send_n_action(info, action_type, INVENTORY_CREATION, STORAGE_MANAGEMENT_INSTANCE,
                                            msg_id=client._next_msg_id())
        except RuntimeError as exc:
            _release_reactor(assoc)
            raise ArchiveError(f"{client.peer}: N-ACTION {action_type}: {exc}") from exc
        if status.get("Status") is None:
            raise _NoAnswer(f"{client.peer}: no answer to N-ACTION {action_type} (aborted or timed out)")
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

    def until_terminated(self) -> _Termination:
        """Wait for the end of production, polling when the events go quiet or their association
        closes; ArchiveError after production_timeout (the transaction is then canceled)."""
        client = self.client
        deadline = time.monotonic() + client.production_timeout
        heard = time.monotonic()
        unanswered = 0  # status requests since the last event
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.cancel_quietly()
                raise ArchiveError(f"{client.peer}: no inventory after {client.production_timeout:g} s "
                                   f"(transaction {self.transaction_uid} canceled)")
            wake = min(deadline, heard + client.poll_after)  # a poll is due then
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
            if unanswered > client.max_unanswered_polls:
                raise ArchiveError(f"{client.peer}: {unanswered - 1} Inventory status requests in a row got no "
                                   f"status event (transaction {self.transaction_uid})")
            client._say("no news from the archive; asking for the inventory's status")
            try:
                status = self.status_request()
            except ArchiveError as exc:  # unreachable or no answer: maybe passing, up to the limit
                if unanswered >= client.max_unanswered_polls:
                    raise
                log.warning("status request failed: %s", exc)
            else:
                if status.Status != 0x0000:  # e.g. the archive no longer knows the transaction
                    raise ArchiveError(f"{client.peer}: Inventory status request refused: 0x{status.Status:04X}"
                                       f"{_comment(status)} (transaction {self.transaction_uid})")
            heard = time.monotonic()

    def _event(self, event_type: int, info: Dataset) -> _Termination | None:
        status = str(info.get("TransactionStatus") or "").strip().upper()
        comment = str(info.get("TransactionStatusComment") or "")
        records = info.get("TotalNumberOfStudyRecords")
        records = int(records) if records not in (None, "") else None
        if event_type == STATUS_EVENT:
            self.client._say(f"Inventory production {status or '?'}: "
                             f"{'?' if records is None else records} study records so far")
            if status in ("PROCESSING", "PAUSED", ""):
                return None
            return _Termination(STATUS_EVENT, status, comment, "", records)
        if event_type == TERMINATED_WITH:
            return _Termination(TERMINATED_WITH, status, comment, str(info.get("ReferencedSOPInstanceUID") or ""),
                                records)
        if event_type == TERMINATED_WITHOUT:
            return _Termination(TERMINATED_WITHOUT, status, comment, "", records)
        log.warning("ignoring N-EVENT-REPORT type %s", event_type)
        return None
