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
   `inventory_receiver.StorageReceiver` is a small one). Each instance's encoded data set is written
   as is (no file meta, no pydicom decoding) to a file in `directory`; `inventory_stream` reads it.

The steps live beside this module, which only orders them: `rules.inventory_matches` (which FIND
matches make a usable tree, and its root), `inventory_creation` (N-ACTIONs and events),
`inventory_retrieval` (C-GET / C-MOVE of a tree), `inventory_tree` (the tree on disk and its checks),
all over one `peer.ArchivePeer`.

Honesty about completion. ArchiveError (the one every reconciliation client raises) when: the archive cannot
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
from datetime import datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association

from workflow.dimse.reactor import StrayCounter, held, release
from workflow.reconcile.dimse.inventory_creation import INITIATE, TERMINATED_WITHOUT, Creation, NoAnswer, Termination
from workflow.reconcile.dimse.inventory_receiver import INVENTORY_SYNTAXES, InventoryReceiver
from workflow.reconcile.dimse.inventory_retrieval import Retrieval
from workflow.reconcile.dimse.inventory_tree import InventoryNode, RetrievedInventory, worst_completion
from workflow.reconcile.dimse.peer import (PENDING, ArchiveError, ArchivePeer, NotAccepted, colon,
                                           status_comment)
from workflow.reconcile.dimse.sop_classes import INVENTORY_FIND, INVENTORY_STORAGE
from workflow.reconcile.rules.inventory_matches import InventoryMatch, RootSearch, inventory_match, usable_groups
from workflow.reconcile.rules.scope import HoldingsScope, scope_item

log = logging.getLogger("workflow.inventory_client")

POLL_AFTER = 20.0  # seconds without an event before asking for the production's status


class InventoryHoldings:
    """An archive's holdings through its Inventory; see the module docstring. Not thread-safe."""

    def __init__(self, ae_title_local: str, remote_ae: str, host: str, port: int, timeout: float = 30.0, *,
                 directory: str | os.PathLike, retrieve: str = "get", receiver: InventoryReceiver | None = None,
                 max_age: timedelta = timedelta(hours=24), poll_after: float | None = None,
                 production_timeout: float = 6 * 3600.0, status_interval: int = 1, uid_batch: int = 50,
                 max_unanswered_polls: int = 3, transfer_syntaxes: Iterable[str] = INVENTORY_SYNTAXES,
                 progress: Callable[[str], None] | None = None, tls_args: tuple | None = None) -> None:
        """timeout: seconds for connecting and for each DIMSE response. poll_after: seconds without an
        event before N-ACTION 12 (default POLL_AFTER). status_interval: Requested Status Interval, minutes. The receiver
        is required with retrieve="move" (its AE title must be `ae_title_local`, known to the archive)."""
        if retrieve not in ("get", "move"):
            raise ValueError('retrieve must be "get" or "move"')
        if retrieve == "move" and receiver is None:
            raise ValueError("C-MOVE needs a receiver for the instances")
        self.archive = ArchivePeer(ae_title_local, remote_ae, host, port, timeout, progress=progress, log=log,
                                   tls_args=tls_args)
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

    @property
    def peer(self) -> str:
        return self.archive.name

    @property
    def progress(self) -> Callable[[str], None] | None:
        """Told every progress line (also logged)."""
        return self.archive.progress

    @progress.setter
    def progress(self, progress: Callable[[str], None] | None) -> None:
        self.archive.progress = progress

    def _retrieval(self) -> Retrieval:
        return Retrieval(self.archive, self.directory, receiver=self.receiver if self.retrieve_mode == "move" else None,
                         transfer_syntaxes=self.transfer_syntaxes, uid_batch=self.uid_batch)

    # -- the whole procedure --

    def fetch(self, scope: HoldingsScope | None = None) -> RetrievedInventory:
        """A recent COMPLETE INSTANCE-level inventory covering `scope`, else a new one."""
        scope = scope or HoldingsScope()
        self.archive.say(f"looking for a recent Inventory at {self.peer}")
        try:
            groups = self.find_recent(scope)
        except NotAccepted as exc:  # no Inventory FIND: Inventory Creation may still be offered
            self.archive.say(str(exc))
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
        groups = usable_groups(self.find(query, scope), cutoff)
        self.archive.say(f"{len(groups)} recent COMPLETE INSTANCE-level Inventory(ies) cover the scope")
        return groups

    def find(self, query: Dataset, scope: HoldingsScope | None = None) -> list[InventoryMatch]:
        """Inventory FIND; `covers` tells whether each match's Scope of Inventory covers `scope`."""
        assoc = self.archive.associate([INVENTORY_FIND], "Inventory FIND")
        try:
            return [inventory_match(ident, scope or HoldingsScope()) for ident in self._find(assoc, query)]
        finally:
            release(assoc)

    def _find(self, assoc: Association, query: Dataset) -> list[Dataset]:
        strays = StrayCounter(assoc)
        matches = []
        with held(assoc):
            try:
                for status, ident in assoc.send_c_find(query, INVENTORY_FIND, msg_id=self.archive.next_msg_id()):
                    code = status.get("Status")
                    if code is None:
                        raise ArchiveError(f"{self.peer}: Inventory FIND aborted or timed out")
                    if code in PENDING:
                        if ident is None:
                            raise ArchiveError(f"{self.peer}: undecodable Inventory FIND response")
                        matches.append(ident)
                    elif code != 0x0000:
                        raise ArchiveError(f"{self.peer}: Inventory FIND status 0x{code:04X}"
                                           f"{status_comment(status)}")
            except RuntimeError as exc:  # the association ended before the request went out
                raise ArchiveError(f"{self.peer}: {exc}") from exc
        if strays.count:
            # a match lost to pynetdicom's reactor: the list may be short (cf. holdings_query)
            raise ArchiveError(f"{self.peer}: an Inventory FIND response was lost locally; answer incomplete")
        return matches

    def _use_group(self, group: list[InventoryMatch]) -> RetrievedInventory | None:
        """The group's tree, once a candidate proves to be its root; None if none does."""
        with self._retrieval() as retrieval:
            found = self._root(retrieval, group)
            if found is not None:
                root, node = found
                self.archive.say(f"using Inventory {root.sop_uid} of {root.content_datetime:%Y-%m-%d %H:%M:%S}"
                                 f" ({root.total_records} study records)")
                return self._finish(retrieval, node, created=False)
        self.archive.say("no root found among the nodes of a recent Inventory; skipping it")
        return None

    def _root(self, retrieval: Retrieval, matches: list[InventoryMatch]
              ) -> tuple[InventoryMatch, InventoryNode] | None:
        """The root among the nodes `matches` name, and its node retrieved (other candidates' files
        are removed); None if no candidate is the root."""
        search = RootSearch(matches)
        for candidate in search.candidates():
            node = retrieval.nodes([candidate.sop_uid])[0]
            if search.is_root(candidate, node.header.incorporated_uids()):
                return candidate, node
            node.path.unlink(missing_ok=True)
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
        with Creation(self.archive, transaction_uid, poll_after=self.poll_after,
                      production_timeout=self.production_timeout,
                      max_unanswered_polls=self.max_unanswered_polls) as creation:
            status = self._initiate(creation, info)
            code = status.get("Status")
            if code == 0xB010:
                self.archive.say("the archive ignored some scope keys: the inventory covers more than asked")
            elif code != 0x0000:
                raise ArchiveError(f"{self.peer} refused Inventory Creation: status "
                                   f"0x{code:04X}{status_comment(status)}")
            self.archive.say(f"requested an Inventory from {self.peer} (transaction {transaction_uid})")
            end = creation.until_terminated()
        if end.status == "CANCELED":
            raise ArchiveError(f"{self.peer}: Inventory production was canceled{colon(end.comment)}")
        if end.event == TERMINATED_WITHOUT:
            raise ArchiveError(f"{self.peer}: Inventory production ended {end.status} without an inventory"
                               f"{colon(end.comment)}")
        root_uid = end.root_uid or self._root_of_transaction(transaction_uid, end)
        self.archive.say(f"Inventory {root_uid} produced ({end.status}, {end.records} study records)")
        with self._retrieval() as retrieval:
            node = retrieval.nodes([root_uid])[0]
            return self._finish(retrieval, node, created=True, transaction=end)

    def _initiate(self, creation: Creation, info: Dataset) -> Dataset:
        """N-ACTION 11. If its answer is lost (the association dropped), the request may or may not
        have arrived: a status request on the Transaction UID tells, and only an unknown transaction
        is initiated again."""
        try:
            return creation.action(INITIATE, info)
        except NoAnswer as exc:
            self.archive.say(f"{exc}; asking whether the request arrived")
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
        with self._retrieval() as retrieval:
            found = self._root(retrieval, matches)
        if found is None:
            raise ArchiveError(f"{self.peer}: the nodes of transaction {transaction_uid} have no single root")
        root, node = found
        node.path.unlink(missing_ok=True)  # retrieved again with its tree
        return root.sop_uid

    # -- 3. retrieval --

    def retrieve(self, root_uid: str) -> RetrievedInventory:
        """Retrieve a known inventory tree by its root's SOP Instance UID."""
        with self._retrieval() as retrieval:
            node = retrieval.nodes([root_uid])[0]
            return self._finish(retrieval, node, created=False)

    def _finish(self, retrieval: Retrieval, root: InventoryNode, *, created: bool,
                transaction: Termination | None = None) -> RetrievedInventory:
        """Retrieve the rest of root's tree and check it; files are removed if it is unusable."""
        nodes = [root]
        try:
            retrieval.rest_of_tree(nodes)
            inventory = RetrievedInventory(root.sop_uid, nodes, worst_completion(n.header.completion for n in nodes),
                                           created, transaction.status if transaction else "",
                                           transaction.comment if transaction else "")
            problem = inventory.unusable()
            if problem:
                raise ArchiveError(f"{self.peer}: {problem}")
        except BaseException:
            for node in nodes:
                node.path.unlink(missing_ok=True)
            raise
        what = "PARTIAL: it speaks only for the studies it lists" if inventory.partial else inventory.completion
        self.archive.say(f"Inventory {root.sop_uid}: {len(nodes)} instance(s), {inventory.total_records} study "
                         f"records, {what}")
        return inventory
