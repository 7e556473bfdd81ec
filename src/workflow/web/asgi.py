"""The ASGI application of the HTTP face: one FastAPI app with every feature's router, the request log
line and metrics, and failures answered as PS3.18 does (status code and Warning header), never a stack
trace. OpenAPI at /openapi.json, interactive docs at /docs."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response

from workflow import __version__
from workflow.access.tokens import Tokens
from workflow.audit.trail import NoAudit
from workflow.metrics import Metrics
from workflow.web.limits import BodyLimit, BodyTooLarge
from workflow.web.responses import failure, warning

log = logging.getLogger("workflow.http")


def build(routers: Iterable[APIRouter], tokens: Tokens, metrics: Metrics, audit=None,
          max_body: int = 256 * 1024 * 1024) -> FastAPI:
    app = FastAPI(title="wfm: the open DICOM workflow manager", version=__version__,
                  description="UPS-RS (PS3.18 chapter 11) under /dicom-web; IAN and MPPS over HTTP, the read API, "
                              "health and metrics under /api and /metrics (non-standard, this server's own).")
    app.state.tokens = tokens
    app.state.metrics = metrics
    app.state.audit = audit or NoAudit()
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=max_body)

    @app.middleware("http")
    async def log_and_count(request: Request, call_next):
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        service = getattr(route, "name", None) or "unrouted"
        seconds = time.perf_counter() - started
        metrics.observe("http", service, str(response.status_code), seconds)
        level = logging.WARNING if response.status_code >= 400 else logging.INFO
        log.log(level, f"{request.method} {request.url.path}: {response.status_code}",
                extra={"calling_ae": getattr(request.state, "principal", None), "peer": _peer(request),
                       "status": str(response.status_code), "outcome": service,
                       "duration_ms": round(seconds * 1000, 1),
                       "reason": response.headers.get("warning")})
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        headers = dict(exc.headers or {})
        headers.update(warning(str(exc.detail)))
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return failure(413, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return failure(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error(f"{request.method} {request.url.path} failed", exc_info=exc, extra={"peer": _peer(request)})
        return failure(500, "the server could not process the request; nothing was changed")

    return app


def _peer(request: Request) -> str | None:
    return f"{request.client.host}:{request.client.port}" if request.client else None
