"""The DICOMweb section of the conformance statement (PS3.2 Annex N's Worklist Web Service): UPS-RS
resources, media types, query parameters, every response code from the answers table the routes use,
the WebSocket event channel, and the server's own (non-standard) endpoints, listed from the HTTP
application's OpenAPI description."""

from __future__ import annotations

import tempfile
from pathlib import Path

from workflow.conformance.markdown import table as _table
from workflow.rights import Right
from workflow.ups import http as ups_http
from workflow.ups import http_answers as answers
from workflow.ups import http_events as events
from workflow.ups import http_request as rq
from workflow.kernel.dicom_json_check import MAX_DEPTH

_W = "/dicom-web/workitems"
RESOURCES = (  # transaction, method, URI template (PS3.18 11.x), parameters, right needed
    (answers.CREATE, "POST", _W, "`workitem` (the UID; else SOP Instance UID (0008,0018) of the payload; "
                                 "else one is assigned)", Right.SCHEDULE),
    (answers.RETRIEVE, "GET", f"{_W}/{{workitem}}", "-", Right.QUERY),
    (answers.UPDATE, "POST", f"{_W}/{{workitem}}", "the Transaction UID (names below)", Right.PERFORM),
    (answers.CHANGE_STATE, "PUT", f"{_W}/{{workitem}}/state", "-", Right.PERFORM),
    (answers.CANCEL, "POST", f"{_W}/{{workitem}}/cancelrequest", "-", Right.SCHEDULE),
    (answers.SEARCH, "GET", _W, "matching keys, `includefield`, `limit`, `offset`, `fuzzymatching`, "
                                "`emptyvaluematching`", Right.QUERY),
    (answers.SUBSCRIBE, "POST", f"{_W}/{{workitem}}/subscribers/{{aetitle}}", "`deletionlock`, `filter`", Right.WATCH),
    (answers.UNSUBSCRIBE, "DELETE", f"{_W}/{{workitem}}/subscribers/{{aetitle}}", "-", Right.WATCH),
    (answers.SUSPEND, "POST", f"{_W}/{{workitem}}/subscribers/{{aetitle}}/suspend", "-", Right.WATCH),
    ("Open Event Channel", "GET (WebSocket)", "/dicom-web/subscribers/{aetitle}", "-", Right.WATCH),
)


def own_endpoints() -> list[tuple[str, str, str]]:
    """(method, path, summary) of every HTTP operation outside /dicom-web, from the application itself."""
    from workflow.app import App
    from workflow.config import Settings

    with tempfile.TemporaryDirectory() as folder:  # nothing is written there: the app is never started
        app = App(Settings(database_url=f"sqlite:///{Path(folder) / 'never.db'}", http_port=8080))
        try:
            spec = app.http.config.app.openapi()
        finally:
            app.engine.dispose()
    return [(method.upper(), path, op.get("summary", "")) for path, ops in spec["paths"].items()
            for method, op in ops.items() if not path.startswith("/dicom-web")]


def render_dicomweb() -> str:
    resource_rows = [(t, m, f"`{p}`", params, f"`{right.value}`") for t, m, p, params, right in RESOURCES]
    answer_rows = [(a.transaction, str(a.http), a.status_text, f"`{a.warning}`" if a.warning else
                    ("the problem found" if a.status is None else "-"), a.when) for a in answers.ANSWERS]
    own_rows = [(m, f"`{p}`", s) for m, p, s in own_endpoints()]
    default_keys = ", ".join(_keyword(tag) for tag in ups_http.DEFAULT_KEYS)
    names = ", ".join(f"`{n}`" for n in sorted(rq.TRANSACTION_UID_NAMES))
    return f"""### 3.5 Web services (DICOMweb): the Worklist Service (UPS-RS)

The HTTP face (`http_host`, `http_port`; section 3.4) serves the Worklist Service of PS3.18 chapter 11
(UPS-RS) under the base `/dicom-web`, as origin server, on the same worklist as the DIMSE UPS SCP of
section 3.2.7: each transaction is one call of the same service, so both faces apply the same
attribute rules, state table, matching and event reports, and answer the same conditions (the DIMSE
status is named in the Warning header). A workitem created, claimed or changed on one face is the same
workitem on the other. HTTP/1.1 over TCP on `http_port`, and over TLS on `https_port` (section 6.1); access by bearer token (section 6.2).

**Resources and the right each needs.** With no token created every request is accepted (a start-up
warning says so); once one exists, a request needs `Authorization: Bearer <token>` whose token holds
the right (`admin` holds all): 401 without a valid token, 403 without the right.

{_table(("Transaction", "Method", "URI template", "Query parameters", "Right"), resource_rows)}

**Media types.** Request payloads and responses are `application/dicom+json` (PS3.18 F.2); a payload
may be one data set or an array holding one. XML (`application/dicom+xml`) and multipart payloads are
not supported; a response is `application/dicom+json` whatever the Accept header asks. A payload is read
when its `Content-Type` is `application/dicom+json` or `application/json` (any case, parameters such as
`charset` aside) or when the request has none; declared as anything else it is refused unread with 415
Unsupported Media Type (RFC 9110 15.5.16) and a Warning naming the type, on every route that reads one
(UPS-RS Create, Update, Change State, Request Cancellation; `/api/ian`, `/api/mpps`). A failure
answers a small JSON body (`application/json`: error, DIMSE status, comment) besides its Warning.

**Payloads.** Every DICOM JSON body the HTTP face reads (UPS-RS, and `/api/ian`, `/api/mpps` below)
is checked before the service sees it and refused with 400 naming the first fault and its path (e.g.
`00400275[0].00321060: ...`); nothing is stored. A body must be JSON (NaN and Infinity are not); an
integer literal of more than 4300 digits or nesting too deep to read is refused the same way. Tags are
8 hexadecimal digits, never of group 0000 (command), 0002 (file meta) or FFFE (items); each `vr` is one
of PS3.5's, in upper case, and for a public attribute one its dictionary entry allows (private and
unknown attributes take any). Values follow PS3.18 F.2 and PS3.5 Table 6.2-1: strings for the text VRs
(null for an empty value), no longer than the VR allows (LO 64 characters, PN 64 per component group,
...) and without NUL (a UI's NUL padding is stripped); PN an object of Alphabetic, Ideographic and
Phonetic strings (a plain string is taken as its Alphabetic group, "=" separating the others); IS and
DS finite numbers or numeric strings; FL and FD finite numbers; SS, US, SL, UL, SV and UV integers in
their range; AT tags as 8 hexadecimal digits; SQ items data sets, at most {MAX_DEPTH} sequences deep.
The binary VRs (OB, OD, OF, OL, OV, OW, UN) take `InlineBinary` (base64), never `Value`;
`BulkDataURI` is refused (the server fetches no bulk data). Create refuses a repeated `workitem`
parameter, and takes neither well-known UID of PS3.4 CC.3.1 ({rq.GLOBAL_UID},
{rq.FILTERED_UID}) as a workitem's UID (400, 0106, as for any invalid SOP Instance UID).

**Query parameters.**
- Update: the Transaction UID under any of the names the editions gave it: {names}, in any letter
  case, `-` or `_` alike. Given in the payload as well, both must be equal.
- Search: each other parameter is a matching key named by keyword or tag (`PatientID`, `00100020`); an
  attribute of a sequence item by a dotted path in either form or mixed
  (`ScheduledStationNameCodeSequence.CodeValue`, `00404025.00080100`); an empty value asks for the
  attribute without matching on it. PN values match the Alphabetic group; a UI value may list UIDs
  separated by commas (or backslashes). Matching is that of C-FIND (section 3.2.7: the same keys, the
  same rules), and the matches come in C-FIND's order (Scheduled Procedure Step Start DateTime, then
  SOP Instance UID). Returned: the Type 1 return keys of Table CC.2.5-3 ({default_keys}),
  the matching keys, and the `includefield` attributes (repeated or comma-separated; `all`: every return
  key of Table CC.2.5-3). The Transaction UID is never returned. `limit` (1 to {rq.MAX_COUNT:,}) and
  `offset` (0 to {rq.MAX_COUNT:,}) page the matches; one answer holds at most {ups_http.MAX_RESULTS:,} matches: when more match, the first
  ones come with the Warning "{ups_http.TOO_MANY}" (the rest with `offset`);
  `fuzzymatching=true` and `emptyvaluematching=true` are not supported and say so in a Warning (the
  search is made without them). An unknown keyword, a malformed tag, a tag of group 0000, 0002 or
  FFFE, or a non-sequence used as a path is 400.
- Subscribe: `deletionlock=true|false` (default false); `filter=attribute=value[,attribute=value]`
  (repeatable; the Filtered Worklist only; keys as in Search, UID lists separated by backslashes).
  Unsubscribe and Suspend take no parameters.

**Subscriptions.** The {{aetitle}} of a subscription is its Receiving AE. A configured `[[remote_ae]]`
gets its events by N-EVENT-REPORT (section 3.2.7), whichever face subscribed it; any other AE title gets
them on its WebSocket, and Subscribe answers its URL in `Content-Location` (the AE title
percent-encoded). Deletion locks are always granted.

**Response codes.** Every answer the service gives, per transaction (PS3.18 Tables 11.4.3-1 to
11.12.3-1; rendered from the table the routes answer with). "-" in the status column: the request was
refused before the worklist was touched. The Warning header is `299 wfm: <text> (<DIMSE status>)`;
where the table's text is general, what the service found (the attribute, the unmet requirement) is
added after a colon.

{_table(("Transaction", "HTTP", "DIMSE status", "Warning", "When"), answer_rows)}

Choices: where PS3.18 lists a state conflict under both 400 and 409 (Change State), a request refused
because of the workitem's state is 409 and one refused for what it carries is 400; Update keeps 400 for
a workitem in a final state, as its table says. A Search with no match is 204 (No Content), as the
current text (8.3.4.4.1, Table 11.9.3-1) says; CP-2473 proposes 200 with an empty payload instead and is
not part of the text read. 410 (Gone) is never answered: a deleted workitem is unknown (404).

**The event channel (PS3.18 8.10, 11.13).** A subscriber opens a WebSocket at
`/dicom-web/subscribers/{{aetitle}}` (token in the Authorization header, an `access_token` query
parameter or the `wfm_token` cookie; the `{Right.WATCH.value}` right). Each event report is one text
frame: a DICOM JSON data set holding the Event Information and the command attributes of the
N-EVENT-REPORT it stands for: Affected SOP Class UID (0000,0002) {events.UPS_EVENT_SOP_CLASS}, Message
ID (0000,0110), Affected SOP Instance UID (0000,1000) and Event Type ID (0000,1002); frames the subscriber
sends are ignored. Events come from
the outbox the DIMSE event sender uses: events owed while the socket is closed wait there
(`event_retry_for`, then UNDELIVERABLE) and are sent when it reconnects, in the order their changes
were committed, across workitems; an event counts as delivered once written to the socket. A subscriber
that takes no event for {events.SEND_TIMEOUT:g} s (it stopped reading) has its socket closed with code
{events.POLICY_VIOLATION}; its events stay owed, and no other subscriber waits for it. One socket
per AE title: a newer one closes the older with code {events.REPLACED}. A socket for a configured
`[[remote_ae]]` (its events go by DIMSE), without the right, or with an invalid AE title is accepted
and closed with code {events.POLICY_VIOLATION} and the reason. Stopping the server closes sockets with
code {events.GOING_AWAY}.

**This server's own endpoints (non-standard).** Not part of DICOMweb; described in the OpenAPI
description at `/openapi.json` (interactive at `/docs`).

{_table(("Method", "Path", "What"), own_rows)}
"""


def _keyword(tag: str) -> str:
    from pydicom.datadict import keyword_for_tag
    return keyword_for_tag(int(tag, 16)) or tag
