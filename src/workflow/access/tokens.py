"""Bearer tokens for the HTTP face: created (shown once), listed, revoked, and checked per request.

A token is 32 random bytes, URL-safe; the database keeps its SHA-256 only (a high-entropy secret needs
no slow hash), so a stolen database discloses no token. Checking a request is one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from workflow.rights import Right, allows, parse_rights
from workflow.access.tables import ApiToken
from workflow.audit.rules import messages
from workflow.audit.trail import NoAudit
from workflow.kernel import requestor
from workflow.kernel.attributes import is_ae_title
from workflow.kernel.ports import Audit
from workflow.kernel.clock import utcnow
from workflow.store.engine import aware, reading

T = ApiToken.__table__
PREFIX = "wfm_"
# How long the answer to "is any token in force?" is reused: a first token created, or the last one
# revoked, takes effect within this many seconds for requests without a token.
OPEN_CHECK_SECONDS = 2.0


class TokenError(ValueError):
    """A token operation that cannot be done (a duplicate name, an unknown one); the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who made a request, for the log and the rights check: a token's name, or "anonymous" while no
    token is in force (the open mode)."""

    name: str
    rights: frozenset[Right]

    def may(self, right: Right) -> bool:
        return allows(self.rights, right)


OPEN = Principal("anonymous", frozenset({Right.ADMIN}))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    def __init__(self, engine: Engine, audit: Audit = NoAudit()) -> None:
        self.engine = engine
        self.audit = audit  # a rights change is a Security Alert (Security Roles Changed)
        self._open_checked: tuple[float, bool] | None = None

    def create(self, name: str, rights: str) -> str:
        """A new token with these rights; returns the token itself (never stored)."""
        name = name.strip()
        if not is_ae_title(name):
            # The name stands where the DIMSE face names the calling AE title (notifications, logs, audit).
            raise TokenError("a token name is 1-16 characters, no backslash (it stands where an AE title would)")
        granted = parse_rights(rights)
        token = PREFIX + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(T.delete().where(T.c.name == name, T.c.revoked_at.is_not(None)))  # a name reused
                conn.execute(T.insert().values(name=name, token_sha256=digest(token),
                                               rights=",".join(sorted(r.value for r in granted)),
                                               created_at=utcnow()))
        except IntegrityError:
            raise TokenError(f"a token named {name!r} exists (revoke it first, or choose another name)") from None
        self._open_checked = None
        self.audit.record_now(messages.security_alert(messages.SECURITY_ROLES_CHANGED, requestor.current(),
                                                      f"API token {name!r} created with rights {rights}", failure=False))
        return token

    def revoke(self, name: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(T).where(T.c.name == name, T.c.revoked_at.is_(None))
                                .values(revoked_at=utcnow())).rowcount
        if not done:
            raise TokenError(f"no token in force named {name!r} (`wfm token list` shows them)")
        self._open_checked = None
        self.audit.record_now(messages.security_alert(messages.SECURITY_ROLES_CHANGED, requestor.current(),
                                                      f"API token {name!r} revoked", failure=False))

    def listing(self) -> list[dict]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(T.c.name, T.c.rights, T.c.created_at, T.c.revoked_at)
                                .order_by(T.c.name)).all()
        return [{"name": r.name, "rights": r.rights.split(","), "created_at": _iso(r.created_at),
                 "revoked_at": _iso(r.revoked_at)} for r in rows]

    def any_in_force(self) -> bool:
        """Whether some token is in force (then every request needs one). Cached briefly."""
        now = time.monotonic()
        if self._open_checked is None or now - self._open_checked[0] > OPEN_CHECK_SECONDS:
            with reading(self.engine) as conn:
                found = conn.execute(select(func.count()).select_from(T).where(T.c.revoked_at.is_(None))).scalar()
            self._open_checked = (now, bool(found))
        return self._open_checked[1]

    def principal(self, token: str | None) -> Principal | None:
        """Who presents `token`: its principal; OPEN when no token was given and none is in force; None
        when the request must be refused (401)."""
        if not token:
            return None if self.any_in_force() else OPEN
        with reading(self.engine) as conn:
            row = conn.execute(select(T.c.name, T.c.rights).where(
                T.c.token_sha256 == digest(token), T.c.revoked_at.is_(None))).first()
        if row is None:
            return None
        return Principal(row.name, parse_rights(row.rights))


def _iso(at: datetime | None) -> str | None:
    return aware(at).isoformat().replace("+00:00", "Z") if at else None
