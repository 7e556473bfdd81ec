"""The ASGI application of the HTTP face: one FastAPI app with every feature's router, the request log
line and metrics, and failures answered as PS3.18 does (status code and Warning header), never a stack
trace. OpenAPI at /openapi.json, interactive docs at /docs."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
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
    app.add_middleware(Head)

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

    @app.exception_handler(HTTPException)  # Starlette's: FastAPI's, and the router's own 404 and 405
    async def http_error(request: Request, exc: HTTPException):
        headers = dict(exc.headers or {})
        detail = exc.detail
        if exc.status_code == 405:  # the router names one route's methods; the path may have several
            allowed = _methods(app, request.url.path)
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        headers.update(warning(str(detail)))
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect):
        log.warning(f"{request.method} {request.url.path}: the client went away before its request ended",
                    extra={"peer": _peer(request)})
        return failure(400, "the request ended before its body")  # nobody reads it

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


def _routes(items):
    """Every route, those of included routers too (FastAPI keeps an included router's routes in it)."""
    for route in items:
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else [route]


def _methods(app: FastAPI, path: str) -> set[str]:
    allowed = set()
    for route in _routes(app.routes):
        regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and methods and regex.match(path):
            allowed |= set(methods)
    return allowed | ({"HEAD"} if "GET" in allowed else set())


class Head:
    """HEAD as GET without the body (RFC 9110 9.3.2: a general-purpose server supports it); routes are
    declared for GET only. The response keeps GET's headers, Content-Length included."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(dict(scope, method="GET"), receive, headers_only)
