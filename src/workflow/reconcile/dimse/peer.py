"""The archive as every reconciliation client talks to it: `ArchivePeer` (our AE, its address,
associations that are established or raise, message IDs, progress lines), `ArchiveError` (the archive
could not answer, completely), and the status texts the clients' messages share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, build_role
from pynetdicom.association import Association

from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release
from workflow.reconcile.dimse.sop_classes import INVENTORY_STORAGE, VERIFICATION

PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000


class ArchiveError(Exception):
    """The archive could not answer (completely). `study_uid`: the study being queried, if any."""

    def __init__(self, message: str, study_uid: str | None = None, *, connection: bool = False):
        super().__init__(message)
        self.message = message
        self.study_uid = study_uid
        # The association failed (aborted, timed out, closed): what was received before is sound.
        self.connection = connection


class NotAccepted(ArchiveError):
    """The archive associates but refuses a presentation context this step needs."""


class ArchivePeer:
    """One archive seen from our AE title. `connect` associates with the contexts requested on `ae`;
    `associate` proposes exactly the abstract syntaxes one step needs and insists on all of them."""

    def __init__(self, local_ae: str, remote_ae: str, host: str, port: int, timeout: float, *,
                 progress: Callable[[str], None] | None = None, log: logging.Logger | None = None,
                 tls_args: tuple | None = None) -> None:
        """timeout: seconds for connecting, for the association's negotiation and for each response;
        tls_args: (SSL context, host name) for DICOM TLS (workflow.tls.outgoing), None for plain TCP."""
        self.tls_args = tls_args
        self.local_ae = local_ae
        self.remote_ae = remote_ae
        self.host = host
        self.port = port
        self.timeout = timeout
        self.progress = progress
        self._log = log or logging.getLogger("workflow.reconcile")
        self.ae = NoDelayAE(ae_title=local_ae)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout
        self.ae.connection_timeout = timeout
        self._msg_id = 0

    @property
    def name(self) -> str:
        return f"{self.remote_ae} at {self.host}:{self.port}"

    def say(self, message: str) -> None:
        """A progress line: logged, and handed to `progress` if there is one."""
        self._log.info(message)
        if self.progress is not None:
            self.progress(message)

    def next_msg_id(self) -> int:
        self._msg_id = self._msg_id % 0xFFFF + 1
        return self._msg_id

    def connect(self, *, purpose: str = "", study_uid: str | None = None, **options) -> Association:
        """An established association (`options` go to AE.associate); ArchiveError otherwise, with
        `connection` set unless the archive rejected us."""
        try:
            assoc = self.ae.associate(self.host, self.port, ae_title=self.remote_ae, tls_args=self.tls_args,
                                      **options)
        except OSError as exc:  # pynetdicom reports most connection failures via is_established
            raise ArchiveError(f"cannot connect to {self.name}: {exc}", study_uid, connection=True) from exc
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "not established (refused, aborted or no answer)"
            what = f" for {purpose}" if purpose else ""
            raise ArchiveError(f"association with {self.name}{what} {reason}", study_uid,
                               connection=not assoc.is_rejected)
        return assoc

    def associate(self, abstract_syntaxes: Sequence[str], purpose: str, *, storage_scp: Iterable[str] = (),
                  handlers: list | None = None) -> Association:
        """A new association proposing `abstract_syntaxes` (and Inventory Storage with the SCP role in
        the `storage_scp` transfer syntaxes, if any); NotAccepted unless all are accepted."""
        # Verification rides along: an archive accepting none of the others would otherwise refuse or
        # abort the association (Orthanc does), and "does not accept X" is the precise message.
        contexts = [build_context(uid, [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)])
                    for uid in [*abstract_syntaxes, VERIFICATION]]
        storage_syntaxes = list(storage_scp)
        ext_neg = []
        if storage_syntaxes:
            contexts.append(build_context(INVENTORY_STORAGE, storage_syntaxes))
            ext_neg.append(build_role(INVENTORY_STORAGE, scp_role=True))
        assoc = self.connect(purpose=purpose, contexts=contexts, ext_neg=ext_neg or None, evt_handlers=handlers or None)
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        missing = [uid for uid in abstract_syntaxes if uid not in accepted]
        if storage_syntaxes and INVENTORY_STORAGE not in accepted:
            missing.append(f"Inventory Storage as SCP with {'/'.join(storage_syntaxes)}")
        if missing:
            release(assoc)
            raise NotAccepted(f"{self.name} does not accept {purpose} ({', '.join(missing)})")
        return assoc


def status_comment(status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f" ({comment})" if comment else ""


def colon(comment: str) -> str:
    return f": {comment}" if comment else ""
