"""Bearer-token access for the HTTP face: each route names the right it needs; a request without a
valid token gets 401 (once any token exists), one whose token lacks the right 403. The principal (the
token's name) is what the request's log line names."""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workflow.access.rules.rights import Right
from workflow.access.tokens import Principal, Tokens

_bearer = HTTPBearer(auto_error=False, description="a token from `wfm token create NAME --rights ...`")


def requires(right: Right) -> Callable:
    """A FastAPI dependency: the request's Principal, if it holds `right`."""
    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        tokens: Tokens = request.app.state.tokens
        principal = tokens.principal(credentials.credentials if credentials else _cookie_token(request))
        if principal is None:
            raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer ...)",
                                headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = principal.name
        if not principal.may(right):
            raise HTTPException(403, f"token {principal.name!r} lacks the right {right.value!r}")
        return principal
    return check


def _cookie_token(request: Request) -> str | None:
    """The web console keeps the token in an HttpOnly session cookie."""
    return request.cookies.get("wfm_token")
