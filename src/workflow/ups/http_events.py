"""UPS event reports over WebSocket (PS3.18 8.10, 11.13): the notification channel a UPS-RS subscriber
opens at `/dicom-web/subscribers/{aetitle}`, fed from the same outbox as DIMSE N-EVENT-REPORTs.

- One outbox, two channels: an AE title that is a configured [[remote_ae]] gets its events by DIMSE (the
  event sender); any other AE title gets them here. A socket opened for a configured remote AE is closed
  with code 1008 (its events go by DIMSE).
- Events owed while a subscriber's socket is closed wait in the outbox (with the retention of DIMSE
  events, `event_retry_for`) and are sent, in the order their changes committed, when it reconnects. An
  event is DELIVERED once written to the socket; a later one never goes before an earlier one still owed.
- One socket per AE title: a newer one replaces the older (closed with code 4000).
- The hub wakes when a commit wrote events (`events_written`) and when a socket connects; a slow round
  every FALLBACK seconds is only a safety net. Each subscriber is sent to in a task of its own, and a
  send that waits longer than SEND_TIMEOUT (a subscriber that stopped reading) closes that socket, its
  events still owed: no subscriber holds up another's events. (Events owed too long expire in the
  app's `wfm-event-expiry` worker, whether or not HTTP is on.)
Also `GET /api/events`: the events owed (or all), as `wfm events --json` lists them.
"""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from workflow.rights import Right
from workflow.access.tokens import Tokens
from workflow.kernel.attributes import is_ae_title
from workflow.kernel.clock import utcnow
from workflow.ups.outbox import Outbox, OwedEvent
from workflow.web.access import requires

log = logging.getLogger("workflow.events")

FALLBACK = 5.0  # seconds between safety-net rounds (an instance may set its own `fallback`)
SEND_TIMEOUT = 30.0  # seconds one event may wait to be taken by the subscriber's socket (`send_timeout`)
UPS_EVENT_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.4"  # as PS3.18 11.13's example names the Affected SOP Class
POLICY_VIOLATION, GOING_AWAY, REPLACED = 1008, 1001, 4000


def event_message(event: OwedEvent) -> str:
    """The WebSocket text frame of one event: its Event Information plus the command attributes of the
    N-EVENT-REPORT it stands for (Affected SOP Class and Instance UID, Message ID, Event Type ID)."""
    report = {"00000002": {"vr": "UI", "Value": [UPS_EVENT_SOP_CLASS]},
              "00000110": {"vr": "US", "Value": [event.id % 65536]},
              "00001000": {"vr": "UI", "Value": [event.workitem_uid]},
              "00001002": {"vr": "US", "Value": [event.event_type_id]}}
    report.update(event.event)
    return json.dumps(report, separators=(",", ":"), ensure_ascii=False)


class EventHub:
    """The sockets of UPS-RS subscribers, and their delivery from the outbox. Runs in the HTTP server's
    event loop; `written()` may be called from any thread."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sockets: dict[str, WebSocket] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._queued: set[str] = set()  # subscribers with a delivery task waiting for their lock
        self._deliveries: set[asyncio.Task] = set()
        self.fallback = FALLBACK
        self.send_timeout = SEND_TIMEOUT

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.fallback)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            for ae_title in list(self.sockets):
                self._deliver_soon(ae_title)

    def _deliver_soon(self, ae_title: str) -> None:
        """Deliver to one subscriber in a task of its own. At most one waits behind the one under way:
        it reads what is owed after the running one finished, so no event written meanwhile is missed."""
        if ae_title in self._queued:
            return
        self._queued.add(ae_title)
        task = asyncio.get_running_loop().create_task(self._delivery(ae_title), name=f"wfm-event-channel-{ae_title}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _delivery(self, ae_title: str) -> None:
        try:
            await self.deliver(ae_title, queued=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the events stay owed; the next round retries
            log.exception("event channel delivery failed", extra={"called_ae": ae_title})

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = asyncio.run_coroutine_threadsafe(self._start(), loop).result(5)

    async def _start(self) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(self.run(), name="wfm-event-hub")

    def written(self) -> None:
        """A commit wrote events (any thread): wake the hub."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop closed meanwhile (the server stopped): nothing to wake
                pass

    async def close_all(self) -> None:
        """The server stops: close every socket (1001), stop the hub."""
        if self._task is not None:
            self._task.cancel()
        for task in list(self._deliveries):
            task.cancel()
        for ae_title, socket in list(self.sockets.items()):
            await _close(socket, GOING_AWAY, "server stopping")
            self.sockets.pop(ae_title, None)

    async def attach(self, ae_title: str, socket: WebSocket) -> None:
        older = self.sockets.get(ae_title)
        self.sockets[ae_title] = socket
        if older is not None:
            await _close(older, REPLACED, "replaced by a newer connection for this AE title")
        log.info("event channel opened", extra={"called_ae": ae_title})
        await self.deliver(ae_title)

    def detach(self, ae_title: str, socket: WebSocket) -> None:
        if self.sockets.get(ae_title) is socket:
            del self.sockets[ae_title]
            log.info("event channel closed", extra={"called_ae": ae_title})

    async def deliver(self, ae_title: str, queued: bool = False) -> None:
        """Send the subscriber what it is owed, in outbox order, marking each as it is written."""
        lock = self._locks.setdefault(ae_title, asyncio.Lock())
        async with lock:
            if queued:
                self._queued.discard(ae_title)
            while (socket := self.sockets.get(ae_title)) is not None:
                owed = await run_in_threadpool(self.outbox.pending_for, ae_title, 100)
                if not owed:
                    return
                for event in owed:
                    if self.sockets.get(ae_title) is not socket:
                        return  # replaced or gone: the rest stays owed, in order
                    try:
                        await asyncio.wait_for(socket.send_text(event_message(event)), self.send_timeout)
                    except asyncio.TimeoutError:  # it stopped reading: the event stays owed
                        log.warning(f"event channel closed: the subscriber took no event for {self.send_timeout:g} s",
                                    extra={"called_ae": ae_title, "sop_instance": event.workitem_uid})
                        self.detach(ae_title, socket)
                        try:  # a close frame waits behind the unread ones too; uvicorn's keepalive ends it then
                            await asyncio.wait_for(_close(socket, POLICY_VIOLATION, "not reading its events"), 5)
                        except asyncio.TimeoutError:
                            pass
                        return
                    except Exception:  # noqa: BLE001 - a socket gone mid-send: the event stays owed
                        self.detach(ae_title, socket)
                        return
                    await run_in_threadpool(self.outbox.delivered, event.id, utcnow())
                    log.info("event delivered", extra={"called_ae": ae_title, "sop_instance": event.workitem_uid,
                                                       "outcome": f"event type {event.event_type_id}"})


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    try:
        await socket.close(code, reason)
    except Exception:  # noqa: BLE001 - already closed
        pass


def router(hub: EventHub, outbox: Outbox, tokens: Tokens) -> APIRouter:
    api = APIRouter(tags=["UPS-RS"])

    @api.websocket("/dicom-web/subscribers/{aetitle}", name="ups-rs open event channel")
    async def channel(socket: WebSocket, aetitle: str) -> None:
        ae_title = aetitle.strip()
        scheme, _, credentials = socket.headers.get("authorization", "").strip().partition(" ")
        token = ((credentials.strip() if scheme.lower() == "bearer" else "")  # a scheme is case-insensitive
                 or socket.query_params.get("access_token") or socket.cookies.get("wfm_token"))
        principal = await run_in_threadpool(tokens.principal, token or None)
        refusal = None
        if principal is None or not principal.may(Right.SUBSCRIBE):
            refusal = "a token with the subscribe right is required"
        elif not is_ae_title(ae_title):  # as Subscribe checks it: 1-16 printable characters, no backslash
            refusal = "not a valid AE title"
        elif outbox.by_dimse(ae_title):
            refusal = f"{ae_title} is a configured remote AE: its events go by DIMSE N-EVENT-REPORT"
        # Accepted first, then closed: a close code and reason reach the client (a refused handshake
        # would only be an HTTP 403).
        await socket.accept()
        if refusal:
            log.warning(f"event channel refused: {refusal}", extra={"called_ae": ae_title})
            await socket.close(POLICY_VIOLATION, refusal)
            return
        await hub.attach(ae_title, socket)
        try:
            # The subscriber has nothing to say; what it sends anyway (text or binary) is ignored.
            while (await socket.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.detach(ae_title, socket)

    @api.get("/api/events", name="events owed", tags=["server"],
             summary="UPS event reports owed to subscribers (state=pending) or all (non-standard)",
             dependencies=[Depends(requires(Right.READ))])
    def events(state: str = Query("pending", pattern="^(pending|all)$")) -> JSONResponse:
        return JSONResponse(outbox.listing(include_delivered=state == "all"))

    return api
