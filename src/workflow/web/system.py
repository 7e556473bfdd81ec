"""The server's own endpoints (non-standard): liveness with the database checked, for load balancers,
and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine, text
from starlette.responses import JSONResponse, Response

from workflow import __version__
from workflow.rights import Right
from workflow.metrics import CONTENT_TYPE, Metrics
from workflow.store.engine import reading
from workflow.web.access import requires


def router(engine: Engine, metrics: Metrics) -> APIRouter:
    api = APIRouter(tags=["server"])

    @api.get("/api/health", name="health", summary="Liveness, with the database reachable (no token needed)")
    def health() -> JSONResponse:
        try:
            with reading(engine) as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised: a load balancer reads the code
            return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(exc).__name__}",
                                 "version": __version__}, status_code=503)
        return JSONResponse({"status": "ok", "database": "reachable", "version": __version__})

    @api.get("/metrics", name="metrics", summary="Prometheus metrics (text format)",
             response_class=Response, dependencies=[Depends(requires(Right.READ))])
    def scrape(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return api
