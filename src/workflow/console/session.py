"""The console's session: the API token entered once on the login page, kept in a cookie the browser
sends with every page (HttpOnly: no script reads it; SameSite=Strict: no other site's page makes the
browser send it; Secure over HTTPS and on the loopback, where browsers keep Secure cookies on plain
HTTP too). The access check is the API's own (`web.access.requires` reads the same cookie).

Forms that change something carry a CSRF token: a random value kept in its own SameSite=Strict cookie
and echoed in a hidden field; a POST whose field and cookie differ (or whose Origin is another site)
is refused before anything is done."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

TOKEN_COOKIE = "wfm_token"  # the name web.access reads
CSRF_COOKIE = "wfm_csrf"
CSRF_FIELD = "csrf"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
SESSION_SECONDS = 12 * 3600


def secure(request: Request) -> bool:
    return request.url.scheme == "https" or (request.url.hostname or "") in LOOPBACK


def set_token(response: Response, request: Request, token: str) -> None:
    response.set_cookie(TOKEN_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=secure(request), path="/")


def clear_token(response: Response) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The request's CSRF token (a new one when it has none; `remember` then sets its cookie)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing
    token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
    request.state.new_csrf = token
    return token


def remember(response: Response, request: Request) -> None:
    """Set the CSRF cookie when this request minted the token."""
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(CSRF_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=secure(request), path="/ui")


def csrf_problem(request: Request, submitted: str | None) -> str | None:
    """Why a form POST is refused, or None when its CSRF token and origin are right."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        here = f"{request.url.scheme}://{request.url.netloc}"
        if origin.rstrip("/") != here:
            return f"the form came from another site ({urlsplit(origin).netloc})"
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return "the form's security token is missing or stale: reload the page and try again"
    return None
