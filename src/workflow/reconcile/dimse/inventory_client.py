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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, build_role
from pynetdicom.association import Association

from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import StrayCounter, hold_reactor, release_reactor
from workflow.reconcile.dimse.archive_probe import INVENTORY_FIND
from workflow.reconcile.dimse.dimse_text import colon, release, status_comment
from workflow.reconcile.dimse.holdings_query import ArchiveError
from workflow.reconcile.dimse.inventory_creation import (INITIATE, TERMINATED_WITHOUT, Creation, NoAnswer, Termination)
from workflow.reconcile.dimse.inventory_receiver import (INVENTORY_STORAGE, INVENTORY_SYNTAXES, InventoryReceiver)
from workflow.reconcile.dimse.inventory_retrieval import PENDING, Retrieval
from workflow.reconcile.dimse.inventory_tree import (InventoryNode, RetrievedInventory, worst_completion)
from workflow.reconcile.rules.scope import HoldingsScope, dicom_datetime, scope_covers, scope_item

log = logging.getLogger("workflow.inventory_client")

VERIFICATION = "1.2.840.10008.1.1"
POLL_AFTER = 20.0  # seconds without an event before asking for the production's status


class NotAccepted(ArchiveError):
    """The archive associates but refuses a presentation context this step needs."""


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
            release(assoc)

    def _find(self, assoc: Association, query: Dataset) -> list[Dataset]:
        strays = StrayCounter(assoc)
        hold_reactor(assoc)
        try:
            responses = assoc.send_c_find(query, INVENTORY_FIND, msg_id=self._next_msg_id())
        except RuntimeError as exc:
            release_reactor(assoc)
            raise ArchiveError(f"{self.peer}: {exc}") from exc
        matches = []
        for status, ident in responses:
            code = status.get("Status")
            if code is None:
                raise ArchiveError(f"{self.peer}: Inventory FIND aborted or timed out")
            if code in PENDING:
                if ident is None:
                    raise ArchiveError(f"{self.peer}: undecodable Inventory FIND response")
                matches.append(ident)
            elif code != 0x0000:
                raise ArchiveError(f"{self.peer}: Inventory FIND status 0x{code:04X}{status_comment(status)}")
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
        with Retrieval(self) as retrieval:
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
        with Creation(self, transaction_uid) as creation:
            status = self._initiate(creation, info)
            code = status.get("Status")
            if code == 0xB010:
                self._say("the archive ignored some scope keys: the inventory covers more than asked")
            elif code != 0x0000:
                raise ArchiveError(f"{self.peer} refused Inventory Creation: status "
                                   f"0x{code:04X}{status_comment(status)}")
            self._say(f"requested an Inventory from {self.peer} (transaction {transaction_uid})")
            end = creation.until_terminated()
        if end.status == "CANCELED":
            raise ArchiveError(f"{self.peer}: Inventory production was canceled{colon(end.comment)}")
        if end.event == TERMINATED_WITHOUT:
            raise ArchiveError(f"{self.peer}: Inventory production ended {end.status} without an inventory"
                               f"{colon(end.comment)}")
        root_uid = end.root_uid or self._root_of_transaction(transaction_uid, end)
        self._say(f"Inventory {root_uid} produced ({end.status}, {end.records} study records)")
        with Retrieval(self) as retrieval:
            node = retrieval.fetch([root_uid])[0]
            return self._finish(retrieval, node, created=True, transaction=end)

    def _initiate(self, creation: Creation, info: Dataset) -> Dataset:
        """N-ACTION 11. If its answer is lost (the association dropped), the request may or may not
        have arrived: a status request on the Transaction UID tells, and only an unknown transaction
        is initiated again."""
        try:
            return creation.action(INITIATE, info)
        except NoAnswer as exc:
            self._say(f"{exc}; asking whether the request arrived")
        status = creation.status_request()
        if status.Status == 0x0000:
            return status
        return creation.action(INITIATE, info)

    def _root_of_transaction(self, transaction_uid: str, end: Termination) -> str:
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
                               f"transaction {transaction_uid} can be found{colon(end.comment)}")
        members = {m.sop_uid for m in matches}
        with Retrieval(self) as retrieval:
            for candidate in sorted(matches, key=lambda m: -(m.total_records or 0)):
                node = retrieval.fetch([candidate.sop_uid])[0]
                node.path.unlink(missing_ok=True)
                if not members - set(node.header.incorporated_uids()) - {candidate.sop_uid}:
                    return candidate.sop_uid
        raise ArchiveError(f"{self.peer}: the nodes of transaction {transaction_uid} have no single root")

    # -- 3./4. retrieval --

    def retrieve(self, root_uid: str) -> RetrievedInventory:
        """Retrieve a known inventory tree by its root's SOP Instance UID."""
        with Retrieval(self) as retrieval:
            node = retrieval.fetch([root_uid])[0]
            return self._finish(retrieval, node, created=False)

    def _finish(self, retrieval: Retrieval, root: InventoryNode, *, created: bool,
                transaction: Termination | None = None) -> RetrievedInventory:
        """Retrieve the rest of root's tree and check it; files are removed if it is unusable."""
        nodes = [root]
        try:
            self._retrieve_subtree(retrieval, nodes)
            inventory = RetrievedInventory(root.sop_uid, nodes, worst_completion(n.header.completion for n in nodes), created,
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

    def _retrieve_subtree(self, retrieval: Retrieval, nodes: list[InventoryNode]) -> None:
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
                               f"{colon(inventory.transaction_comment)}")
        if root.total_records is not None and inventory.total_records != root.total_records:
            raise ArchiveError(f"{self.peer}: Inventory {inventory.root_uid} holds {inventory.total_records} study "
                               f"records where its root says {root.total_records}: tree incomplete")

