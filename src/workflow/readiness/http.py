"""The read API's readiness explanations (non-standard): why a workitem is or is not READY, and why each
template did or did not create a workitem for a study (what `wfm explain [--study] --json` prints)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from workflow.rights import Right
from workflow.kernel.clock import utcnow
from workflow.readiness.service import ReadinessService
from workflow.web.access import requires


def router(readiness: ReadinessService) -> APIRouter:
    api = APIRouter(tags=["read API"], dependencies=[Depends(requires(Right.READ))])

    @api.get("/api/workitems/{uid}/explain", name="explain workitem",
             summary="Why a workitem is or is not READY: its policy, expected set, available and missing inputs, timer")
    def explain(uid: str) -> dict:
        why = readiness.explain(uid, utcnow())
        if why is None:
            raise HTTPException(404, f"unknown workitem: {uid}")
        return why

    @api.get("/api/studies/{uid}/explain", name="explain study",
             summary="Why each template did or did not create a workitem for a study, with the study's facts")
    def explain_study(uid: str) -> dict:
        why = readiness.explain_study(uid)
        if why is None:
            raise HTTPException(404, f"unknown study: {uid}")
        return why

    return api
