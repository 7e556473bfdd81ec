"""Where C-MOVEd Inventory instances arrive: the receiver protocol, writing a received instance as is, and
a minimal Storage SCP (`StorageReceiver`) for tools and tests (the server's own is `storage_scp.py`)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt

from workflow.dimse.nodelay import NoDelayAE, NoDelayAssociationServer
from workflow.reconcile.dimse.sop_classes import INVENTORY_STORAGE

# Syntaxes the reader handles; Explicit first: the archive can then send stored bytes unchanged.
INVENTORY_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))


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
