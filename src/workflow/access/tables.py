"""Access tables. Changing them needs an Alembic migration (tests check it)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlmodel import Field, SQLModel


class ApiToken(SQLModel, table=True):
    """A bearer token for the HTTP face: only its SHA-256 is kept (the token is shown once, at creation)."""

    __tablename__ = "api_token"

    name: str = Field(max_length=64, primary_key=True)
    token_sha256: str = Field(max_length=64, unique=True)
    rights: str = Field(max_length=128)  # comma-separated Right values
    created_at: datetime
    revoked_at: Optional[datetime] = Field(default=None)
