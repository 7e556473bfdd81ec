"""IAN SCP: the N-CREATE handler for Instance Availability Notification (PS3.4 Annex R).

Decode -> `IngestService.receive` (validate, store in one transaction, committed) -> status. Every
outcome is one structured log line naming the calling AE, SOP class, SOP instance, study and status.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pydicom.dataset import Dataset

from workflow.dimse.handling import answer, assigned_uid, context, decode
from workflow.dimse.routing import Routes, ServiceSpec
from workflow.ian.ingest import IngestService, Received
from workflow.ian.rules.notification import IAN_SOP_CLASS_UID
from workflow.metrics import Metrics

log = logging.getLogger("workflow.ian")

SERVICE = ServiceSpec("Instance Availability Notification", IAN_SOP_CLASS_UID, "SCP", "N-CREATE")


class IanScp:
    def __init__(self, ingest: IngestService, metrics: Metrics | None = None) -> None:
        self.ingest = ingest
        self.metrics = metrics or Metrics()

    def routes(self) -> Routes:
        return Routes(offers=(SERVICE,), n_create={IAN_SOP_CLASS_UID: self.n_create})

    def n_create(self, event) -> tuple[Dataset, Dataset | None]:
        started = time.perf_counter()
        uid = event.request.AffectedSOPInstanceUID
        log.debug("IAN received", extra=context(event, uid))
        dataset, failure = decode(event.request.AttributeList, event)
        requestor = event.assoc.requestor
        outcome = failure or self.ingest.receive(Received(
            str(uid) if uid else None, requestor.ae_title, f"{requestor.address}:{requestor.port}",
            datetime.now(timezone.utc), dataset))
        if uid is None:
            # PS3.7 10.1.5: the SCP assigns the UID and returns it; the sender cannot retry safely.
            log.warning("IAN without Affected SOP Instance UID; assigned one", extra=context(event, outcome.uid))
        self.metrics.ians.labels(outcome.facts.get("outcome", "rejected")).inc()
        return answer(log, event, "IAN N-CREATE", outcome, started, outcome.uid), assigned_uid(outcome)
