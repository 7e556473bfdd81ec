"""One reconciliation of one archive, composed from the configuration: the entry point that both
`wfm reconcile run` and the scheduler call (the services stay free of DIMSE; this module wires the
DIMSE clients to them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from workflow.config import Reconcile, RemoteAE, Settings
from workflow.kernel.ports import StudyChanges
from workflow.reconcile.query_path import ReconcileService
from workflow.reconcile.runs import Archive, RunResult, Scope
from workflow.tls import outgoing

log = logging.getLogger("workflow.reconcile")


@dataclass(frozen=True)
class Target:
    """An archive and how to reconcile it: a configured [[remote_ae]] or a one-off from the command line."""

    ae_title: str
    host: str
    port: int
    reconcile: Reconcile
    tls: bool = False  # DICOM TLS to it ([[remote_ae]] tls = true)

    @classmethod
    def of(cls, remote: RemoteAE) -> "Target":
        return cls(remote.ae_title, remote.host, remote.port, remote.reconcile or Reconcile(), remote.tls)

    def scope(self, study_uids: tuple[str, ...] = ()) -> Scope:
        return Scope(days=self.reconcile.days, modalities=self.reconcile.modalities, study_uids=study_uids)

    def archive(self) -> Archive:
        return Archive(self.ae_title, self.host, self.port, self.reconcile.retrieve_ae_title,
                       self.reconcile.count_shortcut)

    def with_options(self, **changes) -> "Target":
        return replace(self, reconcile=replace(self.reconcile, **{k: v for k, v in changes.items() if v is not None}))


class MethodUnavailable(RuntimeError):
    """The archive offers none of the ways the configured method needs."""


def choose_method(settings: Settings, target: Target) -> str:
    """`auto`: Inventory when the archive negotiates Inventory FIND and a retrieve service; else query
    (which itself uses Repository Query where negotiated)."""
    if target.reconcile.method != "auto":
        return target.reconcile.method
    from workflow.reconcile.dimse.archive_probe import probe
    from workflow.reconcile.dimse.sop_classes import (INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE, REPOSITORY_QUERY,
                                                      STUDY_ROOT_FIND)
    accepted = probe(settings.ae_title, target.ae_title, target.host, target.port, timeout=settings.network_timeout,
                     tls_args=outgoing(settings, target))
    retrieve = INVENTORY_GET if target.reconcile.retrieve == "get" else INVENTORY_MOVE
    if INVENTORY_FIND in accepted and retrieve in accepted:
        return "inventory"
    if STUDY_ROOT_FIND in accepted or REPOSITORY_QUERY in accepted:
        return "query"
    raise MethodUnavailable(f"{target.ae_title} accepts neither Inventory Q/R nor Study Root C-FIND "
                            "nor Repository Query")


def run(settings: Settings, engine: Engine, target: Target, study_uids: tuple[str, ...] = (),
        progress: Callable[[str], None] = lambda message: None, *, studies: StudyChanges) -> RunResult:
    """Reconcile `target` now, then apply its feedback policy (the studies whose instances it changes
    are marked through `studies`). Raises RunInProgress when a run of this archive is already RUNNING."""
    from workflow.reconcile.dimse.peer import ArchiveError

    service = ReconcileService(engine)
    archive, scope = target.archive(), target.scope(study_uids)
    try:
        method = choose_method(settings, target)
    except (ArchiveError, MethodUnavailable) as exc:
        return service.failed(archive, target.reconcile.method, scope, f"method could not be chosen: {exc}")
    progress(f"method: {method}")
    if method == "inventory":
        result = _run_inventory(settings, engine, target, archive, scope, progress)
    else:
        result = _run_query(settings, service, target, archive, scope, progress)
    if target.reconcile.feedback == "mark_unavailable" and result.status == "COMPLETED":
        from workflow.reconcile import feedback as reconcile_feedback
        done = reconcile_feedback.apply(engine, result.run_uid, archive.retrieve_ae, studies)
        progress(f"feedback: {done.instances_changed} instance(s) changed in {done.studies_marked} studies")
    return result


def _run_query(settings: Settings, service: ReconcileService, target: Target, archive: Archive, scope: Scope,
               progress) -> RunResult:
    """Repository Query where the archive negotiates it (and the configuration allows), else Study
    Root C-FIND; the run's method says which ("repository" or "query")."""
    from workflow.reconcile.dimse.holdings_query import StudyRootHoldings
    from workflow.reconcile.dimse.peer import ArchiveError
    from workflow.reconcile.dimse.repository_query import RepositoryHoldings

    kind = RepositoryHoldings if target.reconcile.repository_query else StudyRootHoldings
    holdings = kind(settings.ae_title, target.ae_title, target.host, target.port, timeout=settings.network_timeout,
                    tls_args=outgoing(settings, target))
    try:  # not `with holdings`: an archive that cannot be reached is a FAILED run on record
        try:
            holdings.open()
        except ArchiveError:
            pass  # the run's first query fails the same way, and the run is FAILED on record
        method = "repository" if getattr(holdings, "repository", False) else "query"
        progress(f"listing by {'Repository Query' if method == 'repository' else 'Study Root C-FIND'}")
        return service.run(archive, holdings, scope, progress=progress, archive_error=ArchiveError, method=method)
    finally:
        holdings.close()


def _run_inventory(settings: Settings, engine: Engine, target: Target, archive: Archive, scope: Scope,
                   progress) -> RunResult:
    import tempfile

    from workflow.reconcile.dimse.inventory_client import InventoryHoldings
    from workflow.reconcile.dimse.peer import ArchiveError
    from workflow.reconcile.inventory_path import InventoryReconciler

    with tempfile.TemporaryDirectory(prefix="wfm-inventory-") as directory:
        receiver = DatabaseReceiver(engine, directory) if target.reconcile.retrieve == "move" else None
        client = InventoryHoldings(settings.ae_title, target.ae_title, target.host, target.port,
                                   timeout=settings.network_timeout, directory=directory,
                                   retrieve=target.reconcile.retrieve, receiver=receiver, progress=progress,
                                   max_age=timedelta(hours=target.reconcile.inventory_max_age_hours),
                                   tls_args=outgoing(settings, target))
        source = _InventorySource(client, scope)
        return InventoryReconciler(engine, spool_dir=directory).run(archive, source, scope, progress=progress,
                                                                   archive_error=ArchiveError)


class _InventorySource:
    """The Inventory client as inventory_path sees it (a `Source`)."""

    def __init__(self, client, scope: Scope) -> None:
        self.client, self.scope = client, scope

    def fetch(self, progress):
        from workflow.reconcile.inventory_path import Inventory

        found = self.client.fetch(self.scope.holdings_scope())
        # One produced at our request began after the run did: the run's start is the cut-off. One found
        # ready-made was taken at its Content Date and Time (the archive's local time, to the second).
        taken = None if found.created else found.content_datetime
        return Inventory(found.root_uid, found.completion, taken.astimezone(timezone.utc) if taken else None,
                         found.study_rows)


class DatabaseReceiver:
    """Inventory instances C-MOVEd to this server: the Storage SCP of whichever `wfm serve` process
    took the sub-association stored them in the database; they are written to `directory` here."""

    def __init__(self, engine: Engine, directory: str) -> None:
        self.engine, self.directory = engine, Path(directory)

    def expect(self, sop_uids) -> None:
        pass  # the Storage SCP keeps every Inventory instance it is sent

    def wait(self, sop_uid: str, timeout: float):
        from workflow.reconcile.dimse.inventory_receiver import ReceivedInstance
        from workflow.reconcile import received as received_inventories

        got = received_inventories.wait(self.engine, sop_uid, timeout)
        if got is None:
            raise TimeoutError(f"Inventory instance {sop_uid} did not arrive at this server's Storage SCP "
                               f"(is `wfm serve` running, and does the archive know this AE's address?)")
        syntax, data = got
        path = self.directory / f"{sop_uid}.raw"
        path.write_bytes(data)
        return ReceivedInstance(path, syntax)
