"""Which ways of listing its holdings an archive offers: for reconciliation `method = "auto"`.

Proposes the Inventory services, Repository Query and Study Root C-FIND on one association and
returns the abstract syntaxes the archive accepted. Study Root FIND is always proposed alongside:
Orthanc 1.10 aborts an association on which it accepts no context at all, e.g. Inventory only.
"""

from __future__ import annotations

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workflow.reconcile.dimse.holdings_query import ArchiveError
from workflow.dimse.nodelay import NoDelayAE

INVENTORY_FIND = "1.2.840.10008.5.1.4.1.1.201.2"
INVENTORY_MOVE = "1.2.840.10008.5.1.4.1.1.201.3"
INVENTORY_GET = "1.2.840.10008.5.1.4.1.1.201.4"
INVENTORY_CREATION = "1.2.840.10008.5.1.4.1.1.201.5"
REPOSITORY_QUERY = "1.2.840.10008.5.1.4.1.1.201.6"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

PROBED = (INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE, INVENTORY_CREATION, REPOSITORY_QUERY,
          STUDY_ROOT_FIND)


def probe(local_ae: str, remote_ae: str, host: str, port: int, timeout: float = 10.0) -> set[str]:
    """The abstract syntaxes (of `PROBED`) the archive accepts; ArchiveError if it will not associate."""
    ae = NoDelayAE(ae_title=local_ae)
    for syntax in PROBED:
        ae.add_requested_context(syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    peer = f"{remote_ae} at {host}:{port}"
    try:
        assoc = ae.associate(host, port, ae_title=remote_ae)
    except OSError as exc:
        raise ArchiveError(f"cannot connect to {peer}: {exc}") from exc
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "not established (refused, aborted or no answer)"
        raise ArchiveError(f"association with {peer} {reason}")
    try:
        return {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
