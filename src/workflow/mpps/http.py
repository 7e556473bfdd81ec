"""MPPS over HTTP (non-standard, this server's own): `POST /api/mpps` (N-CREATE) and `POST /api/mpps/{uid}`
(N-SET) with DICOM JSON, through the same `PerformedStepService` calls as the DIMSE face."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from workflow.rights import Right
from workflow.access.tokens import Principal
from workflow.mpps.service import PerformedStepService
from workflow.web.access import requires
from workflow.web.outcomes import FAILURE_CODES, dicom_json_body, pop_uid, status_answer

# A710 ("may no longer be updated") comes as 0110 with an Error ID: a conflict with the step's state.
NO_LONGER_UPDATABLE_ID = 0xA710


def router(steps: PerformedStepService) -> APIRouter:
    api = APIRouter(tags=["notifications"])

    @api.post("/api/mpps", name="mpps create", summary="Create a performed procedure step (as N-CREATE)")
    async def create(request: Request, who: Principal = Depends(requires(Right.MPPS))) -> JSONResponse:
        ds = await dicom_json_body(request)
        outcome = await run_in_threadpool(steps.create, pop_uid(ds), ds, who.name)
        return status_answer(outcome, created=True)

    @api.post("/api/mpps/{uid}", name="mpps update", summary="Update or complete a performed procedure step "
              "(as N-SET): 404 unknown (0112), 409 when it is final (0110, Error ID A710)")
    async def update(uid: str, request: Request, who: Principal = Depends(requires(Right.MPPS))) -> JSONResponse:
        ds = await dicom_json_body(request)
        outcome = await run_in_threadpool(steps.set, uid, ds)
        codes = dict(FAILURE_CODES)
        if outcome.error_id == NO_LONGER_UPDATABLE_ID:
            codes[0x0110] = 409
        return status_answer(outcome, codes)

    return api
