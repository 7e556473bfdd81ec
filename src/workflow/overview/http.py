"""The read API's study view (non-standard): `GET /api/studies/{uid}`, what `wfm study --json` prints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import Engine

from workflow.rights import Right
from workflow.overview.study import study_report
from workflow.web.access import requires


def router(engine: Engine) -> APIRouter:
    api = APIRouter(tags=["read API"], dependencies=[Depends(requires(Right.READ))])

    @api.get("/api/studies/{uid}", name="study", summary="What the server knows about a study: instances and "
             "their availability per location, notifications, performed steps, requested procedures, workitems")
    def study(uid: str) -> dict:
        report = study_report(engine, uid)
        if report is None:
            raise HTTPException(404, f"unknown study: no IAN has named {uid}")
        return report

    return api
