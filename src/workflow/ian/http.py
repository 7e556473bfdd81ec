"""IAN over HTTP (non-standard, this server's own): `POST /api/ian` with an IAN data set as DICOM JSON goes
through the same validation and ingest as an N-CREATE (`IngestService.receive`), and answers the same status."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from workflow.rights import Right
from workflow.access.tokens import Principal
from workflow.ian.ingest import IngestService, Received
from workflow.metrics import Metrics
from workflow.web.access import requires
from workflow.web.outcomes import dicom_json_body, peer, pop_uid, status_answer


def router(ingest: IngestService, metrics: Metrics) -> APIRouter:
    api = APIRouter(tags=["notifications"])

    @api.post("/api/ian", name="ian", summary="Receive an Instance Availability Notification (DICOM JSON)",
              description="The IAN data set as DICOM JSON; its SOP Instance UID in (0008,0018), assigned when "
                          "absent. Answers the status an N-CREATE would: 200 for success and warnings; 400 "
                          "for an invalid data set (0105/0106/0120/0121), 409 for another IAN under the same "
                          "UID (0111), 413 for too many instances (0213), 503 when it could not be stored (0110); "
                          "415 for a body declared as another media type than DICOM JSON.")
    async def receive(request: Request, who: Principal = Depends(requires(Right.NOTIFY))) -> JSONResponse:
        ds = await dicom_json_body(request)
        uid = pop_uid(ds)
        outcome = await run_in_threadpool(ingest.receive, Received(uid, who.name, peer(request),
                                                                   datetime.now(timezone.utc), ds))
        metrics.ians.labels(outcome.facts.get("outcome", "rejected")).inc()
        return status_answer(outcome)

    return api

