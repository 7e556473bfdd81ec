"""The reference archive: one AE on 127.0.0.1 serving Storage, Study Root FIND, Repository Query,
Inventory FIND/GET/MOVE and Inventory Creation over the holdings, embeddable in tests and runnable as a demo.

    with ReferenceArchive(ae_title="REFARCH") as archive:     # port 0: a free port is picked
        seeded = archive.holdings.seed(studies=10, series_per_study=2, instances_per_series=5)
        archive.holdings.lose_instance(seeded.instance_uid(3, 1, 2))
        built = archive.build_inventory(level="INSTANCE", record_limit=4)
        ... associate to ("127.0.0.1", archive.port) ...
"""

from __future__ import annotations

import logging
import os
import threading
import time

from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from refarchive.constants import (
    DEFAULT_UID_ROOT,
    INVENTORY_CREATION,
    INVENTORY_FIND,
    INVENTORY_GET,
    INVENTORY_MOVE,
    INVENTORY_STORAGE,
    REPOSITORY_QUERY,
    STUDY_ROOT_FIND,
)
from refarchive.creation import CreationService
from refarchive.faults import Faults
from refarchive.find_scp import StudyRootFind
from refarchive.holdings import Holdings
from refarchive.inventory_build import BuiltInventory, InventoryBuilder, InventoryRequest
from refarchive.inventory_qr import InventoryQr
from refarchive.inventory_store import InventoryStore
from refarchive.nodelay import NoDelayAE, NoDelayAssociationServer
from refarchive.notifier import Notifier
from refarchive.repository_scp import RepositoryQuery
from refarchive.responses import status
from refarchive.scope import Scope
from refarchive.storage_scp import StorageScp

log = logging.getLogger("refarchive")

# Explicit VR LE first: stored inventories are Explicit VR LE, and sending them that way copies
# their sequences as bytes instead of re-encoding every item.
INVENTORY_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


class ReferenceArchive:
    def __init__(self, ae_title: str = "REFARCH", port: int = 0, *, host: str = "127.0.0.1",
                 db_path: str | os.PathLike | None = None, record_limit: int = 1000, fanout: int = 100,
                 move_destinations: dict[str, tuple[str, int]] | None = None, max_transactions: int = 4,
                 status_minute: float = 60.0, uid_root: str = DEFAULT_UID_ROOT, network_timeout: float = 30.0,
                 max_associations: int = 16, repository_query: bool = True,
                 repository_page_limit: int = 10_000) -> None:
        """record_limit: study records per Inventory instance (above it the inventory becomes a tree,
        `fanout` children per index node). move_destinations: AE title -> (host, port) for C-MOVE.
        status_minute: seconds per minute of Requested Status Interval (tests make it small).
        repository_query: offer the Repository Query SOP Class (an archive without it is tested too);
        repository_page_limit: the archive's own limit of matches per Repository Query transaction."""
        self.ae_title = ae_title
        self.host = host
        self._port = port
        self.record_limit = record_limit
        self.fanout = fanout
        self.network_timeout = network_timeout
        self.max_associations = max_associations
        self.move_destinations = dict(move_destinations or {})
        self.holdings = Holdings(db_path, default_retrieve_ae=ae_title, uid_root=uid_root)
        self.inventories = InventoryStore(self.holdings)
        self.faults = Faults()
        self.notifier = Notifier(self.faults)
        self.creation = CreationService(self.holdings, self.inventories, self.notifier, self.faults,
                                        ae_title=ae_title, record_limit=record_limit, fanout=fanout,
                                        max_transactions=max_transactions, minute=status_minute)
        self._storage = StorageScp(self.holdings, self.inventories)
        self._find = StudyRootFind(self.holdings, self.faults)
        self.repository_query = repository_query
        self._repository = RepositoryQuery(self.holdings, self.faults, page_limit=repository_page_limit)
        self._inventory_qr = InventoryQr(self.inventories, self.faults, ae_title, self.move_destinations)
        self._server = None
        self._ae = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _build_ae(self) -> NoDelayAE:
        ae = NoDelayAE(ae_title=self.ae_title)
        ae.maximum_associations = self.max_associations
        ae.network_timeout = self.network_timeout
        ae.acse_timeout = self.network_timeout
        ae.dimse_timeout = self.network_timeout
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        # Received (C-STORE) and sent back on C-GET associations, where the SCU takes the SCP role.
        ae.add_supported_context(INVENTORY_STORAGE, INVENTORY_SYNTAXES, scu_role=True, scp_role=True)
        for uid in (STUDY_ROOT_FIND, INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE, INVENTORY_CREATION):
            ae.add_supported_context(uid)
        if self.repository_query:
            ae.add_supported_context(REPOSITORY_QUERY)
        ae.add_requested_context(INVENTORY_STORAGE, INVENTORY_SYNTAXES)  # C-MOVE sub-associations
        return ae

    def start(self) -> ReferenceArchive:
        if self._server is not None:
            return self
        self._ae = self._build_ae()
        self.creation.start()
        handlers = [
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self._storage.handle),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._inventory_qr.get),
            (evt.EVT_C_MOVE, self._inventory_qr.move),
            (evt.EVT_N_ACTION, self._on_n_action),
        ]
        # AE.start_server takes no server class; this is what it does, with our NODELAY one.
        self._server = self._ae.make_server((self.host, self._port), evt_handlers=handlers,
                                            server_class=NoDelayAssociationServer)
        self._ae._servers.append(self._server)
        threading.Thread(target=self._server.serve_forever, name=f"refarchive-{self.ae_title}", daemon=True).start()
        log.info("%s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop listening and abort every open association (also mid-request); production stops."""
        server, self._server = self._server, None
        if server is None:
            return
        self._port = server.server_address[1]
        server.shutdown()
        self.creation.stop()
        associations = list(server.active_associations)
        for assoc in associations:
            assoc.abort()
        deadline = time.monotonic() + 5
        for assoc in associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        if server in self._ae._servers:
            self._ae._servers.remove(server)
        log.info("%s stopped", self.ae_title)

    def close(self) -> None:
        """stop(), then close the holdings (a temporary database is deleted)."""
        self.stop()
        self.notifier.stop()
        self.holdings.close()

    def __enter__(self) -> ReferenceArchive:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- routing -----------------------------------------------------------------------------------

    def _on_find(self, event):
        model = str(event.context.abstract_syntax)
        if model == STUDY_ROOT_FIND:
            yield from self._find.handle(event)
        elif model == REPOSITORY_QUERY:
            yield from self._repository.handle(event)
        elif model == INVENTORY_FIND:
            yield from self._inventory_qr.find(event)
        else:
            yield status(0x0122, "SOP Class not supported"), None

    def _on_n_action(self, event):
        if str(event.request.RequestedSOPClassUID) != INVENTORY_CREATION:
            return status(0x0122, "SOP Class not supported"), None
        return self.creation.n_action(event)

    # -- without DIMSE -----------------------------------------------------------------------------

    def build_inventory(self, level: str = "STUDY", *, record_limit: int | None = None, fanout: int | None = None,
                        completion: str = "COMPLETE", max_studies: int | None = None, scope: Scope | None = None,
                        purpose: str = "", description: str | None = None,
                        transaction_uid: str | None = None) -> BuiltInventory:
        """Produce and store an inventory of the current holdings now, findable by Inventory FIND.
        completion is stamped on every node; with max_studies, production stops after that many
        study records (completion="PARTIAL" makes the realistic partial inventory)."""
        request = InventoryRequest(level=level, scope=scope or Scope(), purpose=purpose, description=description,
                                   transaction_uid=transaction_uid, record_limit=record_limit or self.record_limit,
                                   fanout=fanout or self.fanout, completion=completion, max_studies=max_studies)
        return InventoryBuilder(self.holdings, self.inventories, request, ae_title=self.ae_title).run()

    def abort_after(self, n_responses: int) -> None:
        """Fault: abort the association after n more responses (see Faults.abort_after)."""
        self.faults.abort_after(n_responses)

    def wait_transaction(self, transaction_uid: str, timeout: float = 30.0):
        """Wait for an Inventory Creation transaction to end; returns its Transaction."""
        tx = self.creation.wait(transaction_uid, timeout)
        self.notifier.flush(timeout)
        return tx
