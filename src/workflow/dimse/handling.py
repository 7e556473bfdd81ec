"""What every DIMSE handler does around its one service call: decode the request's data set, log
one line naming the calling AE, SOP class, SOP instance, status and outcome, and build the status."""

from __future__ import annotations

import logging
import time

from pydicom.dataset import Dataset

from workflow.dimse.datasets import request_json, status_dataset
from workflow.dimse.dicom_json import DecodeError
from workflow.kernel import statuses
from workflow.kernel.statuses import Status
from workflow.kernel.outcome import Outcome


def decode(raw, event) -> tuple[dict | None, Outcome | None]:
    """The request's data set as DICOM JSON, or the 0110 outcome for bytes that are not one."""
    try:
        return request_json(raw, event), None
    except DecodeError as exc:
        return None, Outcome(statuses.PROCESSING_FAILURE, comment=f"undecodable data set: {exc}")


def context(event, uid) -> dict:
    requestor = event.assoc.requestor
    return {"calling_ae": requestor.ae_title, "peer": f"{requestor.address}:{requestor.port}",
            "sop_class": str(event.context.abstract_syntax), "sop_instance": str(uid) if uid else None}


def log_outcome(log: logging.Logger, event, operation: str, status: Status, started: float, uid,
                detail: str | None = None, facts: dict | None = None) -> None:
    extra = dict(context(event, uid), status=status.hex, outcome=status.meaning,
                 duration_ms=round((time.perf_counter() - started) * 1000, 1))
    extra.update(facts or {})
    level = logging.WARNING if status.category == "Failure" else logging.INFO
    log.log(level, f"{operation}: {status.meaning}" + (f" ({detail})" if detail else ""), extra=extra)


def answer(log: logging.Logger, event, operation: str, outcome: Outcome, started: float, uid) -> Dataset:
    """Log the outcome and return its status data set. N-GET, N-SET and N-ACTION responses may name
    the attributes concerned with any failure; N-CREATE only with 0120/0121; C-FIND never."""
    log_outcome(log, event, operation, outcome.status, started, uid,
                outcome.comment or ("; ".join(outcome.notes) if outcome.notes else None), outcome.facts)
    return status_dataset(outcome.status, outcome.comment, outcome.tags,
                          any_status=not operation.split()[-1].startswith(("N-CREATE", "C-FIND")),
                          error_id=outcome.error_id)


def assigned_uid(outcome: Outcome) -> Dataset | None:
    """The N-CREATE response's data set: the SOP Instance UID the SCP assigned (PS3.7 10.1.5), if any."""
    if outcome.status.category == "Failure" or not outcome.dataset:
        return None
    reply = Dataset()
    reply.AffectedSOPInstanceUID = outcome.uid
    return reply


def n_create(log: logging.Logger, event, operation: str, create) -> tuple[Dataset, Dataset | None]:
    """An N-CREATE handled the one way: decode, `create(uid or None, data set)` (the service), answer."""
    started = time.perf_counter()
    uid = event.request.AffectedSOPInstanceUID
    ds, failure = decode(event.request.AttributeList, event)
    outcome = failure or create(str(uid) if uid else None, ds or {})
    return answer(log, event, operation, outcome, started, outcome.uid or uid), assigned_uid(outcome)


def n_set(log: logging.Logger, event, operation: str, update) -> tuple[Dataset, None]:
    """An N-SET handled the one way: decode the Modification List, `update(uid, data set)`, answer."""
    started = time.perf_counter()
    uid = str(event.request.RequestedSOPInstanceUID)
    ds, failure = decode(event.request.ModificationList, event)
    outcome = failure or update(uid, ds or {})
    return answer(log, event, operation, outcome, started, uid), None
