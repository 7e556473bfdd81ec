"""Responses of the HTTP face: DICOM JSON (PS3.18 F.2) and failures as PS3.18 answers them, a status
code with a `Warning: 299 <service>: <text>` header (PS3.18 8.4) that names the condition the DIMSE
status would, plus a small JSON body for people and scripts."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

DICOM_JSON = "application/dicom+json"
SERVICE = "wfm"  # the <service> of Warning headers (RFC 7234: the server's host or pseudonym)


class DicomJSONResponse(Response):
    media_type = DICOM_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def warning(text: str) -> dict[str, str]:
    """The Warning header for `text`: quotes, line breaks and anything not printable ASCII cannot be in a
    header value (a request may echo any character back), so they are escaped."""
    clean = " ".join(text.replace('"', "'").split()).encode("ascii", "backslashreplace").decode("ascii")
    clean = "".join(c if " " <= c <= "~" else "?" for c in clean)[:300]
    return {"Warning": f'299 {SERVICE}: {clean}'}


def failure(code: int, text: str, dimse_status: str | None = None, **extra: Any) -> JSONResponse:
    """A refused request: `code`, the Warning header, and {"error": text, "status": DIMSE status}."""
    body: dict[str, Any] = {"error": text}
    if dimse_status:
        body["status"] = dimse_status
    body.update(extra)
    return JSONResponse(body, status_code=code, headers=warning(text))
