"""Which ways of listing its holdings an archive offers: for reconciliation `method = "auto"`.

Proposes the Inventory services, Repository Query and Study Root C-FIND on one association and
returns the abstract syntaxes the archive accepted. Study Root FIND is always proposed alongside:
Orthanc 1.10 aborts an association on which it accepts no context at all, e.g. Inventory only.
"""

from __future__ import annotations

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workflow.dimse.reactor import release
from workflow.reconcile.dimse.peer import ArchivePeer
from workflow.reconcile.dimse.sop_classes import (INVENTORY_CREATION, INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE,
                                                  REPOSITORY_QUERY, STUDY_ROOT_FIND)

PROBED = (INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE, INVENTORY_CREATION, REPOSITORY_QUERY,
          STUDY_ROOT_FIND)


def probe(local_ae: str, remote_ae: str, host: str, port: int, timeout: float = 10.0,
          tls_args: tuple | None = None) -> set[str]:
    """The abstract syntaxes (of `PROBED`) the archive accepts; ArchiveError if it will not associate."""
    archive = ArchivePeer(local_ae, remote_ae, host, port, timeout, tls_args=tls_args)
    for syntax in PROBED:
        archive.ae.add_requested_context(syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = archive.connect()
    try:
        return {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    finally:
        release(assoc)
