"""MPPS SCP handlers (PS3.4 Annex F): N-CREATE and N-SET, each one PerformedStepService call."""

from __future__ import annotations

import logging


from workflow.dimse.handling import n_create, n_set
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.mpps.rules.procedure_step import MPPS_SOP_CLASS_UID
from workflow.mpps.service import PerformedStepService

log = logging.getLogger("workflow.mpps")


SERVICE = ServiceSpec("Modality Performed Procedure Step", MPPS_SOP_CLASS_UID, "SCP", "N-CREATE, N-SET")


class MppsScp:
    def __init__(self, steps: PerformedStepService) -> None:
        self.steps = steps

    def routes(self) -> Routes:
        return Routes(offers=(SERVICE,), n_create={MPPS_SOP_CLASS_UID: self.n_create},
                      n_set={MPPS_SOP_CLASS_UID: self.n_set})

    def n_create(self, event):
        calling = event.assoc.requestor.ae_title
        return n_create(log, event, "MPPS N-CREATE", lambda uid, ds: self.steps.create(uid, ds, calling))

    def n_set(self, event):
        return n_set(log, event, "MPPS N-SET", self.steps.set)
