"""Bearer-token access for the HTTP face: each route names the right it needs; a request without a
valid token gets 401 (once any token exists), one whose token lacks the right 403. The principal (the
token's name) is who the request acts for: the log line, the audit record and the services name it.

Audit (PS3.15): a refused token is a User Authentication failure and a Security Alert; a missing right a
Security Alert (Use of Restricted Function); a token's use a User Authentication success at most once per
token every LOGIN_EVERY seconds (per server process), not per request."""

from __future__ import annotations

import time
from typing import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from workflow.rights import Right
from workflow.access.tokens import Principal, Tokens
from workflow.audit.rules import messages
from workflow.kernel.requestor import Requestor, set_current

_bearer = HTTPBearer(auto_error=False, description="a token from `wfm token create NAME --rights ...`")
LOGIN_EVERY = 600.0
_last_login: dict[str, float] = {}


def requires(right: Right) -> Callable:
    """A FastAPI dependency: the request's Principal, if it holds `right` (it also becomes the current
    requestor for the services the route calls)."""
    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        tokens: Tokens = request.app.state.tokens
        audit = request.app.state.audit
        token = credentials.credentials if credentials else request.cookies.get("wfm_token")
        principal = await run_in_threadpool(tokens.principal, token)
        address = request.client.host if request.client else ""
        if principal is None:
            who = Requestor("unknown", address, "http")
            await run_in_threadpool(audit.refused, messages.NODE_AUTHENTICATION, who, messages.user_authentication(
                who, False, "no token" if not token else "a token that is unknown or revoked"), messages.security_alert(
                messages.NODE_AUTHENTICATION, who, f"HTTP request refused (401): {request.method} {request.url.path}"))
            raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer ...)",
                                headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = principal.name
        who = Requestor(principal.name, address, "http")
        set_current(who)
        if not principal.may(right):
            await run_in_threadpool(audit.refused, messages.RESTRICTED_FUNCTION, who, messages.security_alert(
                messages.RESTRICTED_FUNCTION, who, f"{request.method} {request.url.path} needs the right {right.value}"))
            raise HTTPException(403, f"token {principal.name!r} lacks the right {right.value!r}")
        if token and time.monotonic() - _last_login.get(principal.name, -LOGIN_EVERY) >= LOGIN_EVERY:
            _last_login[principal.name] = time.monotonic()
            await run_in_threadpool(audit.record_now, messages.user_authentication(who, True))
        return principal
    return check
