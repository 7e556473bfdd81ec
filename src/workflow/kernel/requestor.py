"""Who asked for what the services are doing now: the face sets it around its one service call (the
calling AE title and address over DIMSE, the token's name and client address over HTTP), and the
services read it where an audit record must name its active participant. A context variable: each
association thread and each HTTP request has its own."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Requestor:
    name: str  # the calling AE title, or the token's name ("anonymous" in HTTP's open mode)
    address: str  # the peer's address (host or IP, without the port)
    face: str  # "dimse" or "http"; "local" for the server's own work and the command line


LOCAL = Requestor("wfm", "localhost", "local")
_current: ContextVar[Requestor | None] = ContextVar("wfm_requestor", default=None)


def current() -> Requestor:
    return _current.get() or LOCAL


def set_current(requestor: Requestor) -> None:
    _current.set(requestor)


@contextmanager
def acting_for(requestor: Requestor) -> Iterator[None]:
    token = _current.set(requestor)
    try:
        yield
    finally:
        _current.reset(token)
