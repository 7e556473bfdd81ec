"""The media type a request's payload is declared as: the HTTP face reads DICOM JSON only, and answers
415 (RFC 9110 15.5.16) for a payload declared as anything else, before reading it."""

from __future__ import annotations

from starlette.requests import Request

JSON_TYPES = frozenset({"application/dicom+json", "application/json"})  # PS3.18 F.2; plain JSON as many send


def unsupported(request: Request) -> str | None:
    """Why the request's payload cannot be read as DICOM JSON, from its Content-Type; None for a JSON
    type (parameters such as charset aside) or no Content-Type at all (the body is then tried as JSON)."""
    declared = request.headers.get("content-type")
    if declared is None:
        return None
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type in JSON_TYPES:
        return None
    if media_type == "application/dicom+xml":
        return "DICOM XML payloads are not supported: send application/dicom+json"
    shown = media_type[:64] or "(empty)"
    return f"unsupported media type {shown}: send application/dicom+json"
