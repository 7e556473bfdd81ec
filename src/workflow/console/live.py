"""Live updates of an open worklist page (the console's WebSocket at /ui/live): the page sends the UIDs
of the rows it shows; the server sends what changed in their state or Input Readiness. It wakes when a
commit wrote event reports (the `events_written` signal the event senders wake on), and at least every
LIVE_FALLBACK seconds for changes no subscriber was told of (no event written)."""

from __future__ import annotations

import asyncio

from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from workflow.access.tokens import Tokens
from workflow.console import session, views
from workflow.rights import Right

LIVE_FALLBACK = 2.0  # seconds: a page's workitems are looked at again at least this often


class LiveFeed:
    """Wakes every open worklist page when a commit wrote event reports (the signal the event senders
    wake on); each page then reads its own workitems' state and readiness and gets what changed.
    A slow fallback round catches changes no subscriber was told of (no event written)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.sockets: set[WebSocket] = set()

    def bind(self) -> asyncio.Event:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        return self._event

    def written(self) -> None:
        """Any thread: a commit wrote events."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass

    def _wake(self) -> None:
        old, self._event = self._event, asyncio.Event()
        old.set()

    async def close_all(self) -> None:
        for socket in list(self.sockets):
            try:
                await socket.close(1001, "server stopping")
            except Exception:  # noqa: BLE001 - already closed
                pass
        self.sockets.clear()


async def serve(socket: WebSocket, feed: LiveFeed, tokens: Tokens, engine: Engine) -> None:
    """One page's channel, from its handshake until it goes (or the server stops)."""
    # The page's own origin only (a cross-site page cannot ride the session cookie), and the read right.
    origin, host = socket.headers.get("origin", ""), socket.headers.get("host", "")
    token = socket.cookies.get(session.TOKEN_COOKIE)
    principal = await run_in_threadpool(tokens.principal, token or None)
    await socket.accept()
    if (origin and origin.split("://", 1)[-1] != host) or principal is None or not principal.may(Right.QUERY):
        await socket.close(1008, "not allowed")
        return
    feed.sockets.add(socket)
    try:
        first = await socket.receive_json()
    except (WebSocketDisconnect, RuntimeError, ValueError):
        feed.sockets.discard(socket)
        return
    uids = [u for u in (first.get("uids") or [] if isinstance(first, dict) else []) if isinstance(u, str)][:500]

    async def until_closed() -> None:  # the page says nothing more; this sees it go
        try:
            while True:
                await socket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass

    gone = asyncio.get_running_loop().create_task(until_closed())
    try:
        shown = await run_in_threadpool(views.live_states, engine, uids)
        while not gone.done():
            woken = asyncio.get_running_loop().create_task(feed.bind().wait())
            await asyncio.wait({gone, woken}, timeout=LIVE_FALLBACK, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if gone.done():
                break
            now = await run_in_threadpool(views.live_states, engine, uids)
            changed = [{"uid": u, "state": st, "readiness": rd} for u, (st, rd) in now.items()
                       if shown.get(u) != (st, rd)]
            if changed:
                await socket.send_json({"changed": changed})
                shown = now
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        gone.cancel()
        feed.sockets.discard(socket)
