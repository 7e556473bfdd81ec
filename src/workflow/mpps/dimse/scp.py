"""MPPS SCP handlers (PS3.4 Annex F): N-CREATE and N-SET, each one PerformedStepService call."""

from __future__ import annotations

import logging
import time

from pydicom.dataset import Dataset

from workflow.dimse.handling import answer, decode
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
        started = time.perf_counter()
        uid = event.request.AffectedSOPInstanceUID
        ds, failure = decode(event.request.AttributeList, event)
        outcome = failure or self.steps.create(str(uid) if uid else None, ds or {}, event.assoc.requestor.ae_title)
        reply = None
        if outcome.status.category != "Failure" and outcome.dataset:
            reply = Dataset()
            reply.AffectedSOPInstanceUID = outcome.uid
        return answer(log, event, "MPPS N-CREATE", outcome, started, outcome.uid or uid), reply

    def n_set(self, event):
        started = time.perf_counter()
        uid = str(event.request.RequestedSOPInstanceUID)
        ds, failure = decode(event.request.ModificationList, event)
        outcome = failure or self.steps.set(uid, ds or {})
        return answer(log, event, "MPPS N-SET", outcome, started, uid), None
