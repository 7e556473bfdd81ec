"""The largest request body the HTTP face reads (`max_dataset_bytes`, as for a DIMSE data set): a
declared Content-Length over it is answered 413 before the body is read; a chunked body is counted as it
arrives and refused once it passes the limit, so no handler ever holds more than that in memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from workflow.web.responses import failure


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes (max_dataset_bytes)")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await failure(413, str(BodyTooLarge(self.limit)))(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)  # answered 413 by the app's handler
            return message

        await self.app(scope, counted, send)
