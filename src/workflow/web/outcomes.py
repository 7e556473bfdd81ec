"""The HTTP face's answer for services that speak DIMSE statuses (IAN and MPPS over HTTP, this server's
own `/api`): a JSON body naming the status as DIMSE would, and an HTTP code for it."""

from __future__ import annotations

from typing import Any, Mapping

from fastapi import HTTPException, Request
from starlette.responses import JSONResponse

from workflow.kernel.outcome import Outcome
from workflow.kernel import dicom_json_check
from workflow.web import media_types
from workflow.web.responses import warning

# DIMSE status -> HTTP code, for failures (success and warnings are 200). Unlisted failures: 400.
FAILURE_CODES: Mapping[int, int] = {
    0x0110: 503,  # processing failure: the database refused it; the sender may retry
    0x0111: 409,  # duplicate SOP Instance
    0x0112: 404,  # no such SOP Instance
    0x0213: 413,  # resource limitation (too many instances)
}


def status_answer(outcome: Outcome, codes: Mapping[int, int] = FAILURE_CODES, created: bool = False) -> JSONResponse:
    """{"status": "0000", "meaning", "comment", "sop_instance_uid", "attributes", "notes"} with 200 (201 for a
    creation), or the failure's code and a Warning header."""
    status = outcome.status
    body: dict[str, Any] = {"status": status.hex, "meaning": status.meaning, "comment": outcome.comment,
                            "sop_instance_uid": outcome.uid, "attributes": list(outcome.tags),
                            "notes": list(outcome.notes)}
    if status.category != "Failure":
        return JSONResponse(body, status_code=201 if created else 200)
    code = codes.get(status.code, 400)
    return JSONResponse(body, status_code=code,
                        headers=warning(f"{outcome.comment or status.meaning} ({status.hex})"))


async def dicom_json_body(request: Request) -> dict[str, Any]:
    """The request's body as one DICOM JSON data set (PS3.18 F.2, as `dicom_json_check` accepts it), or 400
    saying what is wrong (415 for a body declared as another media type). A JSON array of exactly one data set is taken as that data set."""
    raw = await request.body()
    if raw.strip() and (problem := media_types.unsupported(request)):
        raise HTTPException(415, problem)
    try:
        body = dicom_json_check.loads(raw or b"null")
    except dicom_json_check.NotJson as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be one DICOM JSON data set (an object of \"GGGGEEEE\" keys)")
    try:
        return dicom_json_check.check(body)
    except dicom_json_check.DicomJsonError as exc:
        raise HTTPException(400, str(exc)) from None


def pop_uid(ds: dict[str, Any], tag: str = "00080018") -> str | None:
    """The SOP Instance UID a body names in `tag` (taken out of the data set: over DIMSE it travels in the
    command, not the data set), or None."""
    element = ds.pop(tag, None)
    values = (element or {}).get("Value") or []
    return str(values[0]).strip() if values and isinstance(values[0], str) and values[0].strip() else None


def peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "-"
