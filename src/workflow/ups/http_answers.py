"""How UPS-RS answers (PS3.18 chapter 11): per transaction, each status the worklist service gives (the
same as over DIMSE) mapped to its HTTP code and the Warning text of PS3.18's tables, as ONE table. The
routes look their answer up here, the conformance statement renders it and the tests walk it.

Sources: PS3.18 Tables 11.4.3-1 to 11.12.3-1 and their Warning header fields (11.6.3.2, 11.7.3.2,
11.8.3.2, 11.10.3.2), editions 2024c to 2026a. Where a table offers both 400 and 409 for a state
conflict (Change State lists "invalid given the current state" under 400 and "inconsistent with the
current state" under 409), a request refused because of the workitem's state is 409 and one refused
because of what it carries (the Transaction UID, the data set) is 400; Update keeps 400 for a
workitem in a final state, as its table says. Search with no match is 204 as the current text
(8.3.4.4.1, Table 11.9.3-1) says; CP-2473 (200 with an empty payload instead) was balloted in 2025 and
is not in the text read. The Warning names the DIMSE status in parentheses: `299 wfm: The Transaction
UID is incorrect. (C301)`."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.kernel import statuses
from workflow.kernel.outcome import Outcome
from workflow.kernel.statuses import Status
from workflow.ups.rules import state as st
from workflow.ups.rules.matching import IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS

CREATE, RETRIEVE, UPDATE, CHANGE_STATE, CANCEL, SEARCH = ("Create", "Retrieve", "Update", "Change State",
                                                        "Request Cancellation", "Search")
SUBSCRIBE, UNSUBSCRIBE, SUSPEND = "Subscribe", "Unsubscribe", "Suspend Global Subscription"
TRANSACTIONS = (CREATE, RETRIEVE, UPDATE, CHANGE_STATE, CANCEL, SEARCH, SUBSCRIBE, UNSUBSCRIBE, SUSPEND)
MISSING = "missing"  # the variant of C301 when no Transaction UID was given
NO_MATCH = "no match"  # the variant of Search's success when nothing matched


@dataclass(frozen=True)
class Answer:
    transaction: str
    status: Status | None  # None: refused before the service (a malformed request)
    http: int
    warning: str | None  # PS3.18's Warning text, or None
    when: str
    variant: str = ""

    @property
    def status_text(self) -> str:
        return self.status.hex if self.status else "-"


def _rows(transaction: str, *rows: tuple) -> tuple[Answer, ...]:
    return tuple(Answer(transaction, *row) for row in rows)


_MALFORMED = (None, 400, None, "malformed: a query parameter, the AE title or the payload (not DICOM JSON of "
                               "PS3.18 F.2); refused before the worklist is touched, the Warning says what")
_BUSY = (statuses.PROCESSING_FAILURE, 503, "The worklist could not process the request; nothing was changed.",
         "the database refused the transaction; the request may be repeated")
_ATTRIBUTE_FAILURES = {
    statuses.NO_SUCH_ATTRIBUTE: "an attribute the transaction does not allow",
    statuses.INVALID_ATTRIBUTE_VALUE: "a value the table does not allow (also: a Transaction UID with a value in "
                                      "Create, items in a sequence Create must leave empty, a UID that is not one)",
    statuses.MISSING_ATTRIBUTE: "a Type 1 or required attribute absent",
    statuses.MISSING_ATTRIBUTE_VALUE: "a Type 1 attribute empty (Update: also one absent from a sequence item)",
}


def _attributes(*failures: Status) -> tuple[tuple, ...]:
    """The attribute-rule failures a transaction can meet (Create: the SOP Instance UID, the only attribute
    it does not allow, comes out of the payload; Update: a missing item attribute is 0121)."""
    return tuple((status, 400, "The request payload did not satisfy the requirements of Table CC.2.5-3.",
                  _ATTRIBUTE_FAILURES[status]) for status in failures)


_NOT_FOUND = (st.NO_SUCH_UPS, 404, "The Target Workitem was not found.", "no workitem with that UID")
_TXN_MISSING = (st.WRONG_TRANSACTION_UID, 400, "The Transaction UID is missing.", "no Transaction UID given", MISSING)
_TXN_WRONG = (st.WRONG_TRANSACTION_UID, 400, "The Transaction UID is incorrect.",
              "not the Transaction UID that locks the workitem")
_STATE_CONFLICT = "The submitted request is inconsistent with the state of the UPS Instance."

ANSWERS: tuple[Answer, ...] = (
    *_rows(CREATE,
           (statuses.SUCCESS, 201, None, "created SCHEDULED; Location names it"),
           (st.CREATED_WITH_MODIFICATIONS, 201, "The Workitem was created with modifications.",
            "created; the server set what was absent or replaced (Worklist Label, Modification DateTime)"),
           _MALFORMED, *_attributes(statuses.INVALID_ATTRIBUTE_VALUE, statuses.MISSING_ATTRIBUTE,
                                    statuses.MISSING_ATTRIBUTE_VALUE),
           (st.CREATE_NOT_SCHEDULED, 400, "The request payload did not satisfy the requirements of Table CC.2.5-3.",
            "Procedure Step State other than SCHEDULED"),
           (statuses.DUPLICATE_SOP_INSTANCE, 409, "The Target Workitem already exists.",
            "a workitem with that UID exists"),
           _BUSY),
    *_rows(RETRIEVE,
           (statuses.SUCCESS, 200, None, "the workitem, without its Transaction UID"),
           _NOT_FOUND),
    *_rows(UPDATE,
           (statuses.SUCCESS, 200, None, "updated"),
           _MALFORMED, *_attributes(statuses.NO_SUCH_ATTRIBUTE, statuses.INVALID_ATTRIBUTE_VALUE,
                                    statuses.MISSING_ATTRIBUTE_VALUE),
           (st.NO_LONGER_UPDATABLE, 400, "The Target Workitem is in the COMPLETED or CANCELED state.",
            "the workitem is in a final state"),
           _TXN_MISSING, _TXN_WRONG,
           (st.NOT_IN_PROGRESS, 409, "The target URI did not reference a claimed Workitem.",
            "a Transaction UID given for a SCHEDULED workitem"),
           _NOT_FOUND, _BUSY),
    *_rows(CHANGE_STATE,
           (statuses.SUCCESS, 200, None, "the state changed as Table CC.1.1-2 says"),
           (st.ALREADY_CANCELED, 200, "The UPS is already in the requested state of CANCELED.",
            "CANCELED asked of a CANCELED workitem"),
           (st.ALREADY_COMPLETED_WARNING, 200, "The UPS is already in the requested state of COMPLETED.",
            "COMPLETED asked of a COMPLETED workitem, with its Transaction UID"),
           _MALFORMED, _TXN_MISSING, _TXN_WRONG,
           (st.NO_LONGER_UPDATABLE, 409, _STATE_CONFLICT, "the workitem is in a final state"),
           (st.ALREADY_IN_PROGRESS, 409, _STATE_CONFLICT, "IN PROGRESS asked of an IN PROGRESS workitem"),
           (st.SCHEDULED_ONLY_BY_CREATE, 409, _STATE_CONFLICT, "SCHEDULED asked (only Create makes it)"),
           (st.FINAL_STATE_NOT_MET, 409, _STATE_CONFLICT,
            "COMPLETED or CANCELED while Final State requirements are unmet (the Warning names them)"),
           (st.NOT_IN_PROGRESS, 409, _STATE_CONFLICT, "COMPLETED or CANCELED asked of a SCHEDULED workitem"),
           _NOT_FOUND, _BUSY),
    *_rows(CANCEL,
           (statuses.SUCCESS, 202, None, "SCHEDULED: canceled by the server at once; IN PROGRESS: the request "
                                         "passed to the subscribers (UPS Cancel Requested)"),
           (st.ALREADY_CANCELED, 202, "The UPS is already in the requested state of CANCELED.",
            "the workitem is CANCELED"),
           _MALFORMED,
           (st.ALREADY_COMPLETED, 409, "The Target Workitem is in the COMPLETED state.", "the workitem is COMPLETED"),
           _NOT_FOUND, _BUSY),
    *_rows(SEARCH,
           (statuses.SUCCESS, 200, None, "the matches, in the order C-FIND gives them"),
           (statuses.SUCCESS, 204, None, "nothing matched (no payload)", NO_MATCH),
           _MALFORMED,
           (IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, 400, "There was a problem with the request.",
            "a key value C-FIND would refuse (malformed range, bad UID, several values outside a UID list)"),
           _BUSY),
    *_rows(SUBSCRIBE,
           (statuses.SUCCESS, 201, None, "subscribed; Content-Location names the WebSocket of the AE title "
                                         "(unless it is a configured DIMSE subscriber)"),
           _MALFORMED,
           (st.INVALID_ARGUMENT_VALUE, 400, "There was a problem with the syntax of the request.",
            "filter keys that C-FIND would refuse"),
           (st.NO_SUCH_UPS, 404, "The Target Resource was not found.", "no workitem with that UID"),
           _BUSY),
    *_rows(UNSUBSCRIBE,
           (statuses.SUCCESS, 200, None, "unsubscribed (also when there was no subscription)"),
           _MALFORMED,
           (st.NO_SUCH_UPS, 404, "The Target Resource was not found.", "no workitem with that UID"),
           _BUSY),
    *_rows(SUSPEND,
           (statuses.SUCCESS, 200, None, "the global subscription suspended; workitem subscriptions stay"),
           _MALFORMED,
           (st.NO_SUCH_UPS, 404, "The target Subscription was not found.",
            "a UID other than the Worklist or Filtered Worklist"),
           _BUSY),
)

# The statuses whose Warning adds what the service said (the attribute concerned, the unmet requirement,
# the refused key); the others give PS3.18's text verbatim.
DETAILED = frozenset({0x0105, 0x0106, 0x0120, 0x0121, 0xC309, 0xC304, 0xA900, 0x0115, 0x0110})

_BY_KEY = {(a.transaction, a.status.code if a.status else None, a.variant): a for a in ANSWERS}


def answer_for(transaction: str, outcome: Outcome | None, variant: str = "") -> Answer:
    """The row for `outcome` (None: the request was malformed). A status the table lacks (a bug: the
    tests walk every row) is answered like the transaction's malformed or success row."""
    code = outcome.status.code if outcome else None
    found = _BY_KEY.get((transaction, code, variant)) or _BY_KEY.get((transaction, code, ""))
    if found is not None:
        return found
    if outcome is not None and outcome.status.category != "Failure":
        return _BY_KEY[(transaction, 0, "")]
    return _BY_KEY[(transaction, None, "")]


def warning_text(row: Answer, outcome: Outcome | None, detail: str | None = None) -> str | None:
    """The Warning text: the table's, what the service or the parser said when it adds something, and
    the DIMSE status."""
    if outcome is None:
        return detail
    extra = detail or (outcome.comment if outcome.status.code in DETAILED else None)
    if row.warning is None and outcome.status.category == "Success":
        return None
    text = row.warning or outcome.status.meaning
    if extra and extra != outcome.status.meaning and extra not in text:
        text = f"{text.rstrip('.')}: {extra}"
    return f"{text} ({outcome.status.hex})"
