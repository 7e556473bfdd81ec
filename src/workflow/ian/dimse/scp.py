"""IAN SCP: the N-CREATE handler for Instance Availability Notification (PS3.4 Annex R).

Decode -> validate (domain) -> ingest (one transaction, committed) -> status. Every outcome is one
structured log line naming the calling AE, SOP class, SOP instance, study and status.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from workflow.dimse.datasets import request_json, status_dataset
from workflow.dimse.dicom_json import DecodeError
from workflow.kernel import statuses
from workflow.ian.rules.notification import IAN_SOP_CLASS_UID, IANRejected, is_uid, parse_ian
from workflow.kernel.statuses import Status
from workflow.ian.ingest import IngestResult, IngestService, Received

log = logging.getLogger("workflow.ian")

# Every status this SCP returns and when: rendered into the conformance statement (PS3.2 N.7.3.2.4).
STATUS_CONDITIONS: tuple[tuple[Status, str], ...] = (
    (statuses.SUCCESS, "The IAN was validated and committed to the database; or it repeats an IAN "
                       "already stored under the same SOP Instance UID with identical content (nothing "
                       "is stored twice)."),
    (statuses.INVALID_ATTRIBUTE_VALUE, "A UID is malformed (including the Affected SOP Instance UID), "
                                       "Instance Availability is not one of the four defined terms, a "
                                       "Retrieve AE Title is not a valid AE title, an attribute has more "
                                       "values than its VM allows, an attribute that must be a sequence "
                                       "is not, or the Referenced Performed Procedure Step Sequence has "
                                       "more than one item. Error Comment names the attribute."),
    (statuses.PROCESSING_FAILURE, "The data set cannot be decoded (Error Comment says why), or the database "
                                  "refused the transaction (nothing was stored; the sender may retry)."),
    (statuses.DUPLICATE_SOP_INSTANCE, "An IAN with the same SOP Instance UID but different content was "
                                      "stored earlier. The earlier IAN is kept unchanged."),
    (statuses.MISSING_ATTRIBUTE, "A Type 1 attribute is absent, or the request has no data set. Attribute "
                                 "Identifier List (0000,1005) names the attribute; Error Comment gives it by name."),
    (statuses.MISSING_ATTRIBUTE_VALUE, "A Type 1 attribute is present but empty (a sequence without items). "
                                       "Attribute Identifier List (0000,1005) names the attribute."),
    (statuses.RESOURCE_LIMITATION, "The IAN references more instances than `max_instances_per_ian`."),
    (statuses.NO_SUCH_SOP_CLASS, "An N-CREATE for a SOP Class other than IAN reached the server."),
)


class IanScp:
    def __init__(self, ingest: IngestService, max_instances: int) -> None:
        self.ingest = ingest
        self.max_instances = max_instances

    def handle_n_create(self, event) -> tuple[Dataset, Dataset | None]:
        started = time.perf_counter()
        request = event.request
        requestor = event.assoc.requestor
        ctx = {
            "calling_ae": requestor.ae_title,
            "peer": f"{requestor.address}:{requestor.port}",
            "sop_class": IAN_SOP_CLASS_UID,
        }
        uid = request.AffectedSOPInstanceUID
        reply: Dataset | None = None
        if uid is None:
            # PS3.7 10.1.5: the SCP assigns the UID and returns it. The sender then cannot retry
            # safely, so we say so in the log.
            uid = generate_uid()
            reply = Dataset()
            reply.AffectedSOPInstanceUID = uid
            log.warning("IAN without Affected SOP Instance UID; assigned one", extra={**ctx, "sop_instance": uid})
        ctx["sop_instance"] = str(uid)
        log.debug("IAN received", extra=ctx)
        status, comment, tags, extra = self._process(event, str(uid), ctx)
        ctx.update(extra)
        ctx.update(status=status.hex, duration_ms=round((time.perf_counter() - started) * 1000, 1))
        level = logging.INFO if status.category == "Success" else logging.WARNING
        log.log(level, f"IAN {ctx.get('outcome', status.meaning)}" + (f": {comment}" if comment else ""),
                extra=ctx)
        return status_dataset(status, comment, tags), (reply if status.code == 0 else None)

    def _process(self, event, uid: str, ctx: dict):
        if not is_uid(uid):
            return statuses.INVALID_ATTRIBUTE_VALUE, "Affected SOP Instance UID is not a valid UID", (), {
                "outcome": "rejected"}
        try:
            dataset = request_json(event.request.AttributeList, event)
        except DecodeError as exc:
            return statuses.PROCESSING_FAILURE, f"undecodable data set: {exc}", (), {"outcome": "rejected"}
        if dataset is None:
            return statuses.MISSING_ATTRIBUTE, "IAN has no data set", (), {"outcome": "rejected"}
        try:
            ian = parse_ian(dataset, self.max_instances)
        except IANRejected as exc:
            extra = {"outcome": "rejected", "reason": exc.path or exc.comment}
            return exc.status, exc.comment, exc.tags, extra
        extra = {"study_instance_uid": ian.study_instance_uid, "instances": len(ian.instances)}
        for warning in ian.warnings:
            log.warning(f"IAN accepted with a deviation: {warning}", extra={**ctx, **extra})
        requestor = event.assoc.requestor
        received = Received(uid, requestor.ae_title, f"{requestor.address}:{requestor.port}",
                            datetime.now(timezone.utc), dataset)
        try:
            result = self.ingest.ingest(received, ian)
        except Exception:
            log.exception("IAN could not be stored", extra={**ctx, **extra})
            return statuses.PROCESSING_FAILURE, "could not store the IAN; nothing was kept", (), {
                **extra, "outcome": "failed"}
        if result is IngestResult.CONFLICT:
            return (statuses.DUPLICATE_SOP_INSTANCE,
                    "an IAN with this SOP Instance UID and other content exists", (),
                    {**extra, "outcome": "conflict"})
        return statuses.SUCCESS, None, (), {**extra, "outcome": result.value}
