"""Retrieving an Inventory tree's instances: C-GET (we are its Storage SCP) or C-MOVE to our own AE."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association

from workflow.dimse.reactor import held, release
from workflow.reconcile.dimse.inventory_receiver import InventoryReceiver, ReceivedInstance, write_received
from workflow.reconcile.dimse.inventory_stream import InventoryFormatError, open_inventory
from workflow.reconcile.dimse.inventory_tree import InventoryNode
from workflow.reconcile.dimse.peer import PENDING, ArchiveError, ArchivePeer, status_comment
from workflow.reconcile.dimse.sop_classes import INVENTORY_GET, INVENTORY_MOVE, INVENTORY_STORAGE


class Retrieval:
    """One association retrieving Inventory instances: C-GET (we are its Storage SCP, in
    `transfer_syntaxes`) or, given a `receiver`, C-MOVE (to our own AE title, where the receiver gets
    them). Files go to `directory`. Aborted, not released, after a failure: responses may still be
    pending."""

    def __init__(self, archive: ArchivePeer, directory: str | os.PathLike, *, receiver: InventoryReceiver | None = None,
                 transfer_syntaxes: Iterable[str] = (), uid_batch: int = 50) -> None:
        self.archive = archive
        self.directory = Path(directory)
        self.receiver = receiver
        self.move = receiver is not None
        self.transfer_syntaxes = list(transfer_syntaxes)
        self.uid_batch = uid_batch
        self._assoc: Association | None = None
        self._expected: set[str] = set()
        self._received: dict[str, ReceivedInstance] = {}
        self._store_errors: list[str] = []

    def __enter__(self) -> Retrieval:
        if self.move:
            self._assoc = self.archive.associate([INVENTORY_MOVE], "Inventory MOVE")
        else:
            self._assoc = self.archive.associate([INVENTORY_GET], "Inventory GET", storage_scp=self.transfer_syntaxes,
                                                 handlers=[(evt.EVT_C_STORE, self._on_store)])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assoc, self._assoc = self._assoc, None
        for received in self._received.values():  # arrived but never asked for by fetch()
            received.path.unlink(missing_ok=True)
        if assoc is None:
            return
        if exc_type is None:
            release(assoc)
        elif assoc.is_established:
            assoc.abort()

    def nodes(self, uids: list[str]) -> list[InventoryNode]:
        """The instances, in `uids` order, written to files with their headers read."""
        archive = self.archive
        what = "C-MOVE" if self.move else "C-GET"
        identifier = Dataset()
        identifier.SOPInstanceUID = uids if len(uids) > 1 else uids[0]
        self._expected = set(uids)
        if self.move:
            self.receiver.expect(uids)
        assoc = self._assoc
        final = None
        with held(assoc):
            try:
                if self.move:
                    responses = assoc.send_c_move(identifier, archive.local_ae, INVENTORY_MOVE,
                                                  msg_id=archive.next_msg_id())
                else:
                    responses = assoc.send_c_get(identifier, INVENTORY_GET, msg_id=archive.next_msg_id())
                for status, ident in responses:
                    code = status.get("Status")
                    if code is None:
                        raise ArchiveError(f"{archive.name}: Inventory {what} aborted or timed out "
                                           f"({len(self._received)} of {len(uids)} instances received)")
                    if code not in PENDING:
                        final = (status, ident)
            except RuntimeError as exc:  # the association ended before the request went out
                raise ArchiveError(f"{archive.name}: Inventory {what}: {exc}") from exc
        if final is None:
            raise ArchiveError(f"{archive.name}: Inventory {what} ended without a final status")
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

    def rest_of_tree(self, nodes: list[InventoryNode]) -> None:
        """Retrieve every instance the root (`nodes[0]`) incorporates, `uid_batch` per request, plus any
        a node adds, appending each to `nodes` as it arrives (the caller removes their files on failure)."""
        queued = {nodes[0].sop_uid}
        pending = []
        for uid in nodes[0].header.incorporated_uids():
            if uid not in queued:
                queued.add(uid)
                pending.append(uid)
        total = len(pending) + 1
        while pending:
            batch, pending = pending[:self.uid_batch], pending[self.uid_batch:]
            for node in self.nodes(batch):
                nodes.append(node)
                for uid in node.header.incorporated_uids():  # a node may name more than the root did
                    if uid not in queued:
                        queued.add(uid)
                        pending.append(uid)
                        total += 1
            size = sum(n.size for n in nodes)
            self.archive.say(f"retrieved {len(nodes)}/{total} Inventory instances ({size / 1e6:.1f} MB)")

    def _check_final(self, what: str, status: Dataset, ident: Dataset | None) -> None:
        code = status.Status
        peer = self.archive.name
        if code == 0x0000:
            return
        if code == 0xA801:
            raise ArchiveError(f"{peer} does not know Move Destination {self.archive.local_ae} "
                               "(add it to the archive's AE configuration)")
        failed = ident.get("FailedSOPInstanceUIDList") if ident is not None else None
        detail = f"; failed: {failed}" if failed else ""
        if code == 0xFE00:
            raise ArchiveError(f"{peer}: Inventory {what} canceled{detail}")
        kind = "warning" if 0xB000 <= code <= 0xBFFF else "failure"
        raise ArchiveError(f"{peer}: Inventory {what} {kind} 0x{code:04X}{status_comment(status)}{detail}")

    def _node(self, uid: str) -> InventoryNode:
        peer = self.archive.name
        if self.move:
            try:
                received = self.receiver.wait(uid, self.archive.timeout)
            except (TimeoutError, OSError) as exc:
                raise ArchiveError(f"{peer}: Inventory C-MOVE reported success but {exc}") from exc
        else:
            received = self._received.pop(uid, None)
            if received is None:
                raise ArchiveError(f"{peer}: Inventory C-GET reported success but {uid} never arrived")
        try:
            with open_inventory(received.path, received.transfer_syntax) as inv:
                header = inv.header
        except (InventoryFormatError, OSError) as exc:
            received.path.unlink(missing_ok=True)
            raise ArchiveError(f"{peer}: Inventory instance {uid} unreadable: {exc}") from exc
        if header.sop_instance_uid != uid:
            received.path.unlink(missing_ok=True)
            raise ArchiveError(f"{peer}: asked for Inventory {uid}, received {header.sop_instance_uid}")
        return InventoryNode(uid, received.path, received.transfer_syntax, header, received.path.stat().st_size)

    def _on_store(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid not in self._expected or str(event.request.AffectedSOPClassUID) != INVENTORY_STORAGE:
            return 0x0124  # Refused: not asked for
        try:
            self._received[uid] = write_received(self.directory, event)
        except OSError as exc:
            self._store_errors.append(f"cannot write {uid}: {exc}")
            return 0xA700
        return 0x0000
