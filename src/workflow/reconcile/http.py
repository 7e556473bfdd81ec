"""The read API's reconciliation reports (non-standard): runs, a run's report as JSON, CSV or HTML, and
its integrity against the SHA-256 recorded when it ended (what `wfm report list|show|verify` give)."""

from __future__ import annotations

import io

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response

from workflow.rights import Right
from workflow.audit.rules import messages
from workflow.kernel import requestor
from workflow.kernel.ports import Audit
from workflow.reconcile import reports
from workflow.web.access import requires

MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


def router(engine: Engine, audit: Audit) -> APIRouter:
    api = APIRouter(tags=["read API"], dependencies=[Depends(requires(Right.READ))])

    def run_of(run_uid: str) -> int:
        run_id = reports.run_id(engine, run_uid)
        if run_id is None:
            raise HTTPException(404, f"no reconciliation run {run_uid}")
        return run_id

    @api.get("/api/reconciliations", name="reconciliations", summary="Reconciliation runs, most recent first")
    def runs(limit: int = Query(50, ge=1, le=10_000)) -> list[dict]:
        return reports.list_runs(engine, limit)

    @api.get("/api/reconciliations/{run_uid}", name="reconciliation report", response_class=Response,
             summary="A run's report: json (the canonical document whose SHA-256 was recorded), csv or html")
    def report(run_uid: str, format: str = Query("json", pattern="^(json|csv|html)$")) -> Response:
        run_id = run_of(run_uid)
        if format == "json":
            out = io.BytesIO()
            reports.render_json(engine, run_id, out)
            body = out.getvalue()
        else:
            text = io.StringIO(newline="")
            (reports.render_csv if format == "csv" else reports.render_html)(engine, run_id, text)
            body = text.getvalue().encode("utf-8")
        audit.record_now(messages.report_read(requestor.current(), run_uid, exported=format))
        disposition = f'inline; filename="reconciliation-{run_uid}.{format}"'
        return Response(body, media_type=MEDIA[format], headers={"Content-Disposition": disposition})

    @api.get("/api/reconciliations/{run_uid}/verify", name="reconciliation verify",
             summary="Does the report still match the SHA-256 recorded when the run ended? 200 yes, 409 no")
    def verify(run_uid: str) -> JSONResponse:
        result = reports.verify(engine, run_of(run_uid))
        audit.record_now(messages.report_read(requestor.current(), run_uid))
        body = {"ok": result.ok, "recorded": result.recorded, "computed": result.computed,
                "problems": list(result.problems)}
        return JSONResponse(body, status_code=200 if result.ok else 409)

    return api
