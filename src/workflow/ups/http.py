"""UPS-RS, the Worklist Service of PS3.18 chapter 11, on the same `WorklistService` calls as the DIMSE
face: each route reads its request (`http_request`, 400 before the service when malformed), makes one
service call and maps the outcome to its HTTP code and Warning (`http_answers`, one table).

Media type application/dicom+json (PS3.18 F.2) for payloads and results. Subscriptions made here are
delivered over the AE title's WebSocket (`http_events`), unless the AE title is a configured
[[remote_ae]], whose events go by N-EVENT-REPORT (the outbox's one rule)."""

from __future__ import annotations

from itertools import islice
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from workflow.access.tokens import Principal
from workflow.kernel import statuses
from workflow.kernel.outcome import Outcome
from workflow.rights import Right
from workflow.ups import http_answers as answers
from workflow.ups import http_request as rq
from workflow.ups.rules.attributes import UPS_ATTRIBUTES
from workflow.ups.rules.matching import QueryRejected
from workflow.ups.worklist import WorklistService
from workflow.kernel import dicom_json_check
from workflow.web import media_types
from workflow.web.access import requires
from workflow.web.responses import DICOM_JSON, DicomJSONResponse, failure, warning

BASE = "/dicom-web/workitems"
MAX_RESULTS = 10_000  # matches one Search answers; more are asked for with offset (PS3.18 8.3.4.4)
TOO_MANY = ("The number of results exceeded the maximum supported by the server. Additional results can be "
            "requested.")
# Search returns these unless asked for more (the Type 1 return keys of Table CC.2.5-3); includefield=all
# adds every other return key the table lists.
DEFAULT_KEYS = tuple(a.tag for a in UPS_ATTRIBUTES if a.return_key == "1")
ALL_KEYS = tuple(a.tag for a in UPS_ATTRIBUTES if a.return_key not in ("-", "1"))

_JSON = {"application/json": {}}
_DICOM = {DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}}}
_BODY = {"requestBody": {"required": True, "content": {DICOM_JSON: {"schema": {"type": "object"}}}}}
_OPTIONAL_BODY = {"requestBody": {"required": False, "content": {DICOM_JSON: {"schema": {"type": "object"}}}}}


def _failures(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {400: "malformed request, or refused for what it carries (Warning: why, DIMSE status)",
               404: "no such workitem", 409: "refused in the workitem's state (Warning: why, DIMSE status)",
               415: "a payload declared as another media type than application/dicom+json",
               503: "the worklist could not process it; nothing changed"}
    return {code: {"description": meaning[code], "content": _JSON} for code in codes}


def reply(transaction: str, outcome: Outcome | None, *, variant: str = "", body: Any = None,
          headers: dict[str, str] | None = None, detail: str | None = None) -> Response:
    """The HTTP answer of `outcome` (None: malformed, `detail` says why) from the answers table."""
    row = answers.answer_for(transaction, outcome, variant)
    text = answers.warning_text(row, outcome, detail)
    if row.http >= 400:
        return failure(row.http, text or "refused", outcome.status.hex if outcome else None,
                       **({"comment": outcome.comment} if outcome and outcome.comment else {}))
    out = dict(headers or {})
    if text:
        out.update(warning(text))
    if row.http == 204 or body is None:
        return Response(status_code=row.http, headers=out)
    return DicomJSONResponse(body, status_code=row.http, headers=out)


async def _payload(request: Request, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise rq.BadRequest("the request needs a DICOM JSON payload")
        return {}
    if problem := media_types.unsupported(request):
        raise rq.UnsupportedMedia(problem)
    try:
        body = dicom_json_check.loads(raw)
    except dicom_json_check.NotJson as exc:
        raise rq.BadRequest(f"the body is not JSON: {exc}") from None
    if isinstance(body, list) and len(body) == 1:
        body = body[0]  # the DICOM JSON model is an array: one data set in it
    return rq.check_dataset(body)


def _search(worklist: WorklistService, search: rq.Search) -> tuple[list[dict], bool]:
    """The page of matches (at most MAX_RESULTS: a Search answers in one payload, C-FIND streams) and
    whether more were left out; the service's generator is closed (its connection returned) at once."""
    matches = worklist.find(search.identifier)
    cap = MAX_RESULTS if search.limit is None else min(search.limit, MAX_RESULTS)
    try:
        found = list(islice(matches, search.offset, search.offset + cap + 1))
    finally:
        matches.close()
    capped_by_us = search.limit is None or search.limit > MAX_RESULTS  # not by the client's own limit
    return found[:cap], capped_by_us and len(found) > cap


def router(worklist: WorklistService) -> APIRouter:
    api = APIRouter(tags=["UPS-RS"])

    def malformed(transaction: str, exc: rq.BadRequest) -> Response:
        if isinstance(exc, rq.UnsupportedMedia):
            return failure(415, str(exc))
        return reply(transaction, None, detail=str(exc))

    async def ending(transaction: str, call, uid: str, aetitle: str, request: Request) -> Response:
        """Unsubscribe and Suspend: the same parameters, one service call each."""
        try:
            info = rq.subscription(uid.strip(), aetitle, request.query_params.multi_items(), subscribing=False)
        except rq.BadRequest as exc:
            return malformed(transaction, exc)
        return reply(transaction, await run_in_threadpool(call, uid.strip(), info))

    @api.post(BASE, name="ups-rs create", status_code=201, response_class=Response,
              summary="Create Workitem (PS3.18 11.4): 201 with Location", openapi_extra=_BODY,
              responses={201: {"description": "created"}, **_failures(400, 409, 415, 503)})
    async def create(request: Request, workitem: str | None = Query(None, description="the workitem's UID"),
                     who: Principal = Depends(requires(Right.SCHEDULE))) -> Response:
        try:
            if len(request.query_params.getlist("workitem")) > 1:
                raise rq.BadRequest("the workitem parameter is given more than once")
            ds = await _payload(request)
            in_payload = rq.uid_value(ds, rq.SOP_INSTANCE_UID)
            if workitem and in_payload and workitem.strip() != in_payload:
                raise rq.BadRequest("the workitem parameter and SOP Instance UID (0008,0018) differ")
            ds.pop(rq.SOP_INSTANCE_UID, None)  # over DIMSE it travels in the command, not the data set
        except rq.BadRequest as exc:
            return malformed(answers.CREATE, exc)
        outcome = await run_in_threadpool(worklist.create, (workitem or "").strip() or in_payload, ds)
        location = {"Location": f"{str(request.base_url).rstrip('/')}{BASE}/{outcome.uid}"} if outcome.uid else {}
        return reply(answers.CREATE, outcome, headers=location if outcome.status.category != "Failure" else None)

    @api.get(BASE, name="ups-rs search", response_class=DicomJSONResponse,
             summary="Search Workitems (PS3.18 11.9): the same matching as C-FIND; 204 when nothing matches",
             description="Any other query parameter is a matching key: `{keyword or tag}[.{item keyword or tag}]"
                         "={value}`; an empty value asks for the attribute (universal matching).",
             responses={200: {"content": _DICOM, "description": "the matches"},
                        204: {"description": "nothing matched"}, **_failures(400, 503)})
    async def search(request: Request,
                     includefield: list[str] = Query([], description="attributes to return, or `all`"),
                     limit: str | None = Query(None, description="at most this many matches"),
                     offset: str | None = Query(None, description="skip this many matches"),
                     fuzzymatching: str | None = Query(None, description="not supported: a Warning says so"),
                     who: Principal = Depends(requires(Right.QUERY))) -> Response:
        try:
            query = rq.parse_search(request.query_params.multi_items(), DEFAULT_KEYS, ALL_KEYS)
        except rq.BadRequest as exc:
            return malformed(answers.SEARCH, exc)
        try:
            found, truncated = await run_in_threadpool(_search, worklist, query)
        except QueryRejected as exc:
            return reply(answers.SEARCH, Outcome(exc.status, comment=exc.comment))
        notes = query.warnings + ([TOO_MANY] if truncated else [])
        headers = warning(" ".join(notes)) if notes else None
        outcome = Outcome(statuses.SUCCESS)
        return reply(answers.SEARCH, outcome, variant="" if found else answers.NO_MATCH, body=found,
                     headers=headers)

    @api.get(BASE + "/{uid}", name="ups-rs retrieve", response_class=DicomJSONResponse,
             summary="Retrieve Workitem (PS3.18 11.5), never with its Transaction UID",
             responses={200: {"content": _DICOM, "description": "the workitem"}, **_failures(400, 404)})
    async def retrieve(uid: str, who: Principal = Depends(requires(Right.QUERY))) -> Response:
        outcome = await run_in_threadpool(worklist.get, uid.strip(), None)
        body = None
        if outcome.dataset is not None:
            body = [{tag: el for tag, el in outcome.dataset.items() if tag != rq.TRANSACTION_UID}]
        return reply(answers.RETRIEVE, outcome, body=body)

    @api.post(BASE + "/{uid}", name="ups-rs update", response_class=Response, openapi_extra=_BODY,
              summary="Update Workitem (PS3.18 11.6); the Transaction UID parameter under any spelling "
                      "(transaction-uid, transaction, Transaction-uid, ...)",
              responses={200: {"description": "updated"}, **_failures(400, 404, 409, 415, 503)})
    async def update(uid: str, request: Request,
                     transaction_uid: str | None = Query(None, alias="transaction-uid"),
                     who: Principal = Depends(requires(Right.PERFORM))) -> Response:
        try:
            ds = await _payload(request)
            txn = rq.transaction_uid(request.query_params.multi_items())
            given = rq.uid_value(ds, rq.TRANSACTION_UID)
            if txn and given and txn != given:
                raise rq.BadRequest("the Transaction UID of the query and of the payload differ")
        except rq.BadRequest as exc:
            return malformed(answers.UPDATE, exc)
        txn = txn or given
        if txn:
            ds[rq.TRANSACTION_UID] = {"vr": "UI", "Value": [txn]}
        else:
            ds.pop(rq.TRANSACTION_UID, None)
        outcome = await run_in_threadpool(worklist.set, uid.strip(), ds)
        return reply(answers.UPDATE, outcome, variant="" if txn else answers.MISSING)

    @api.put(BASE + "/{uid}/state", name="ups-rs change state", response_class=Response, openapi_extra=_BODY,
             summary="Change Workitem State (PS3.18 11.7): payload Transaction UID and Procedure Step State",
             responses={200: {"description": "changed (a Warning when it already was)"},
                        **_failures(400, 404, 409, 415, 503)})
    async def change_state(uid: str, request: Request,
                           who: Principal = Depends(requires(Right.PERFORM))) -> Response:
        try:
            info = rq.change_state(await _payload(request))
        except rq.BadRequest as exc:
            return malformed(answers.CHANGE_STATE, exc)
        outcome = await run_in_threadpool(worklist.change_state, uid.strip(), info)
        variant = "" if rq.uid_value(info, rq.TRANSACTION_UID) else answers.MISSING
        return reply(answers.CHANGE_STATE, outcome, variant=variant)

    @api.post(BASE + "/{uid}/cancelrequest", name="ups-rs request cancellation", status_code=202,
              response_class=Response, openapi_extra=_OPTIONAL_BODY,
              summary="Request Cancellation (PS3.18 11.8); optional payload: reason, contact",
              responses={202: {"description": "accepted"}, **_failures(400, 404, 409, 415, 503)})
    async def cancel(uid: str, request: Request, who: Principal = Depends(requires(Right.SCHEDULE))) -> Response:
        try:
            info = await _payload(request, required=False)
        except rq.BadRequest as exc:
            return malformed(answers.CANCEL, exc)
        # The Requesting AE of the UPS Cancel Requested event: the token's name ("anonymous" with none).
        outcome = await run_in_threadpool(worklist.request_cancel, uid.strip(), info, who.name[:16])
        return reply(answers.CANCEL, outcome)

    subscriber = BASE + "/{uid}/subscribers/{aetitle}"

    @api.post(subscriber, name="ups-rs subscribe", status_code=201, response_class=Response,
              summary="Subscribe (PS3.18 11.10) to a workitem, the Worklist (1.2.840.10008.5.1.4.34.5) or "
                      "the Filtered Worklist (1.2.840.10008.5.1.4.34.5.1)",
              responses={201: {"description": "subscribed; Content-Location: the WebSocket"},
                         **_failures(400, 404, 503)})
    async def subscribe(uid: str, aetitle: str, request: Request,
                        deletionlock: str | None = Query(None, description="true or false (default)"),
                        filter: list[str] = Query([], description="attribute=value[,attribute=value] "
                                                                  "(Filtered Worklist only)"),
                        who: Principal = Depends(requires(Right.WATCH))) -> Response:
        try:
            info = rq.subscription(uid.strip(), aetitle, request.query_params.multi_items(), subscribing=True)
        except rq.BadRequest as exc:
            return malformed(answers.SUBSCRIBE, exc)
        ae = rq.ae_title(aetitle)
        by_dimse = worklist.settings.remote(ae) is not None  # the outbox's rule (ups/outbox.py by_dimse)
        outcome = await run_in_threadpool(worklist.subscribe, uid.strip(), info, websocket=not by_dimse)
        headers = None
        if not by_dimse:
            ws = str(request.base_url).replace("http", "ws", 1).rstrip("/")
            headers = {"Content-Location": f"{ws}/dicom-web/subscribers/{quote(ae, safe='')}"}
        return reply(answers.SUBSCRIBE, outcome, headers=headers)

    @api.delete(subscriber, name="ups-rs unsubscribe", response_class=Response,
                summary="Unsubscribe (PS3.18 11.11)",
                responses={200: {"description": "unsubscribed"}, **_failures(400, 404, 503)})
    async def unsubscribe(uid: str, aetitle: str, request: Request,
                          who: Principal = Depends(requires(Right.WATCH))) -> Response:
        return await ending(answers.UNSUBSCRIBE, worklist.unsubscribe, uid, aetitle, request)

    @api.post(subscriber + "/suspend", name="ups-rs suspend", response_class=Response,
              summary="Suspend Global Subscription (PS3.18 11.12)",
              responses={200: {"description": "suspended"}, **_failures(400, 404, 503)})
    async def suspend(uid: str, aetitle: str, request: Request,
                      who: Principal = Depends(requires(Right.WATCH))) -> Response:
        return await ending(answers.SUSPEND, worklist.suspend, uid, aetitle, request)

    return api
