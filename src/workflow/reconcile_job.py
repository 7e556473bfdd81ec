"""One reconciliation of one archive, composed from the configuration: the entry point that both
`wfm reconcile run` and the scheduler call (the services stay free of DIMSE; this module wires the
DIMSE clients to them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable

from sqlalchemy import Engine

from workflow.config import Reconcile, RemoteAE, Settings
from workflow.services.reconcile import Archive, ReconcileService, RunResult, Scope

log = logging.getLogger("workflow.reconcile")


@dataclass(frozen=True)
class Target:
    """An archive and how to reconcile it: a configured [[remote_ae]] or a one-off from the command line."""

    ae_title: str
    host: str
    port: int
    reconcile: Reconcile

    @classmethod
    def of(cls, remote: RemoteAE) -> "Target":
        return cls(remote.ae_title, remote.host, remote.port, remote.reconcile or Reconcile())

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
    """`auto`: Inventory when the archive negotiates Inventory FIND and a retrieve service; else query."""
    if target.reconcile.method != "auto":
        return target.reconcile.method
    from workflow.dimse.archive_probe import (INVENTORY_FIND, INVENTORY_GET, INVENTORY_MOVE, STUDY_ROOT_FIND,
                                              probe)
    accepted = probe(settings.ae_title, target.ae_title, target.host, target.port, timeout=settings.network_timeout)
    retrieve = INVENTORY_GET if target.reconcile.retrieve == "get" else INVENTORY_MOVE
    if INVENTORY_FIND in accepted and retrieve in accepted:
        return "inventory"
    if STUDY_ROOT_FIND in accepted:
        return "query"
    raise MethodUnavailable(f"{target.ae_title} accepts neither Inventory Q/R nor Study Root C-FIND")


def run(settings: Settings, engine: Engine, target: Target, study_uids: tuple[str, ...] = (),
        progress: Callable[[str], None] = lambda message: None) -> RunResult:
    """Reconcile `target` now. Raises RunInProgress when a run of this archive is already RUNNING."""
    from workflow.dimse.holdings_query import ArchiveError, StudyRootHoldings

    service = ReconcileService(engine)
    archive, scope = target.archive(), target.scope(study_uids)
    try:
        method = choose_method(settings, target)
    except (ArchiveError, MethodUnavailable) as exc:
        return service.failed(archive, target.reconcile.method, scope, f"method could not be chosen: {exc}")
    if method == "inventory":
        return service.failed(archive, method, scope, "the Inventory path is not available yet")
    holdings = StudyRootHoldings(settings.ae_title, target.ae_title, target.host, target.port,
                                 timeout=settings.network_timeout)
    try:  # not `with holdings`: an archive that cannot be reached is a FAILED run on record
        return service.run(archive, holdings, scope, progress=progress, archive_error=ArchiveError)
    finally:
        holdings.close()
