"""The Unified Procedure Step state machine: PS3.4 Table CC.1.1-2 as data, run by a `transitions`
Machine, and the decisions the UPS SCP takes for N-CREATE, N-ACTION (Change UPS State, Request UPS
Cancel) and N-SET (CC.2.6).

Pure: the service looks the instance up, passes its state and stored Transaction UID, and acts on the
returned `Decision` (answer the status, store the new state and lock, send the event reports).

Source: PS3.4 Annex CC, 2020 text (chsasank/dicom_standard chapter_CC.rst), whose Table CC.1.1-2 has a
"with correct" and a "without correct Transaction UID" row for each target state; the row and column
order match the digest (and microsoft/dicom-server). Later editions were not compared cell by cell.

The Transaction UID (the lock) is kept after a Final State (`clear_transaction_uid` is never set):
the COMPLETED and CANCELED columns still tell a correct UID (B306, B304, C300) from a wrong one (C301),
so a performer that repeats its last N-ACTION after a lost response gets the warning, not C301. The UID
is never disclosed: N-GET does not return it and C-FIND cannot match on it (CC.2.7.3, Table CC.2.5-3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


from workflow.kernel import statuses
from workflow.kernel.attributes import is_uid
from workflow.kernel.statuses import Status
from workflow.kernel.state_table import Cell, build_machine, decide


UPS_PUSH_SOP_CLASS_UID = "1.2.840.10008.5.1.4.34.6.1"  # every UPS has it (CC.2.5.1.3.1, CC.3.1.1)


class UPSState(StrEnum):
    """Procedure Step State (0074,1000), Table CC.1.1-1."""

    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({UPSState.COMPLETED, UPSState.CANCELED})

# Service-specific statuses: PS3.4 Tables CC.2.1-2 (change state), CC.2.2-2 (request cancel),
# CC.2.5-4 (N-CREATE) and CC.2.6-1 (N-SET); meanings shortened from the standard's wording.
CREATED_WITH_MODIFICATIONS = Status(0xB300, "Warning", "The UPS was created with modifications")
ALREADY_CANCELED = Status(0xB304, "Warning", "The UPS is already in the requested state of CANCELED")
COERCED_INVALID_VALUES = Status(0xB305, "Warning", "Coerced invalid values to valid values")
ALREADY_COMPLETED_WARNING = Status(0xB306, "Warning", "The UPS is already in the requested state of COMPLETED")
NO_LONGER_UPDATABLE = Status(0xC300, "Failure", "The UPS may no longer be updated")
WRONG_TRANSACTION_UID = Status(0xC301, "Failure", "The correct Transaction UID was not provided")
ALREADY_IN_PROGRESS = Status(0xC302, "Failure", "The UPS is already IN PROGRESS")
SCHEDULED_ONLY_BY_CREATE = Status(0xC303, "Failure", "The UPS may only become SCHEDULED via N-CREATE")
FINAL_STATE_NOT_MET = Status(0xC304, "Failure", "The UPS has not met final state requirements")
NO_SUCH_UPS = Status(0xC307, "Failure", "Specified SOP Instance UID does not exist or is not a UPS")
CREATE_NOT_SCHEDULED = Status(0xC309, "Failure", "The provided value of UPS State was not SCHEDULED")
NOT_IN_PROGRESS = Status(0xC310, "Failure", "The UPS is not in the IN PROGRESS state")
ALREADY_COMPLETED = Status(0xC311, "Failure", "The UPS is already COMPLETED")
PERFORMER_UNREACHABLE = Status(0xC312, "Failure", "The performer cannot be contacted")
PERFORMER_DECLINES = Status(0xC313, "Failure", "Performer chooses not to cancel")
# A general N-ACTION status (PS3.7 10.1.4.1.10: "the action information value specified was out of range
# or otherwise inappropriate"); statuses.py does not have it. N-ACTION has no 0106 or 0120.
INVALID_ARGUMENT_VALUE = Status(0x0115, "Failure", "Invalid argument value")

UPS_STATUSES: tuple[Status, ...] = (
    CREATED_WITH_MODIFICATIONS, ALREADY_CANCELED, COERCED_INVALID_VALUES, ALREADY_COMPLETED_WARNING,
    NO_LONGER_UPDATABLE, WRONG_TRANSACTION_UID, ALREADY_IN_PROGRESS, SCHEDULED_ONLY_BY_CREATE,
    FINAL_STATE_NOT_MET, NO_SUCH_UPS, CREATE_NOT_SCHEDULED, NOT_IN_PROGRESS, ALREADY_COMPLETED,
    PERFORMER_UNREACHABLE, PERFORMER_DECLINES, INVALID_ARGUMENT_VALUE,
)


@dataclass(frozen=True)
class Decision:
    """What the SCP answers and does for one request."""

    status: Status
    new_state: UPSState | None = None  # None: the state does not change
    reports: tuple[UPSState, ...] = ()  # UPS State Reports (event type 1) to send, in this order
    cancel_requested: bool = False  # send UPS Cancel Requested (event type 2) to the subscribers
    store_transaction_uid: bool = False  # record the request's Transaction UID as the lock
    clear_transaction_uid: bool = False  # never set: the lock outlives the Final State (module docstring)

    @property
    def accepted(self) -> bool:
        return self.status.category != "Failure"

    @property
    def text(self) -> str:
        """The cell text for the rendered table."""
        if self.status.category != "Success":
            return f"{self.status.category.lower()} {self.status.hex}"
        steps = [f"report {state}" for state in self.reports]
        steps += ["record Transaction UID"] if self.store_transaction_uid else []
        steps += ["send UPS Cancel Requested (event 2)"] if self.cancel_requested else []
        steps += [f"→ {self.new_state}"] if self.new_state else []
        return ", ".join(steps)


class Event(StrEnum):
    """The rows of Table CC.1.1-2; the member name is the Machine's trigger."""

    N_CREATE = "N-CREATE received for this SOP Instance UID"
    TO_IN_PROGRESS = "N-ACTION to Change State to IN PROGRESS with correct Transaction UID"
    TO_IN_PROGRESS_WITHOUT_TXN = "N-ACTION to Change State to IN PROGRESS without correct Transaction UID"
    TO_SCHEDULED = "N-ACTION to Change State to SCHEDULED"
    TO_COMPLETED = "N-ACTION to Change State to COMPLETED with correct Transaction UID"
    TO_COMPLETED_WITHOUT_TXN = "N-ACTION to Change State to COMPLETED without correct Transaction UID"
    REQUEST_CANCEL = "N-ACTION to Request Cancel"
    TO_CANCELED = "N-ACTION to Change State to CANCELED with correct Transaction UID"
    TO_CANCELED_WITHOUT_TXN = "N-ACTION to Change State to CANCELED without correct Transaction UID"


NO_INSTANCE = "NO INSTANCE"
COLUMNS: tuple[str, ...] = (NO_INSTANCE, *(state.value for state in UPSState))


def _answer(status: Status) -> Cell:
    return Cell(Decision(status))


def _go(state: UPSState, *reports: UPSState, store: bool = False) -> Cell:
    return Cell(Decision(statuses.SUCCESS, state, reports, store_transaction_uid=store))


def _if_met(state: UPSState) -> Cell:
    """The Final State cells: go to `state` if its requirements are met, else C304."""
    return Cell(Decision(statuses.SUCCESS, state, (state,)), "final_requirements_met",
                Decision(FINAL_STATE_NOT_MET))


_S, _P, _C, _X = UPSState.SCHEDULED, UPSState.IN_PROGRESS, UPSState.COMPLETED, UPSState.CANCELED
_0111, _C300, _C301, _C302, _C303, _C307, _C310, _C311, _B304, _B306 = (_answer(status) for status in (
    statuses.DUPLICATE_SOP_INSTANCE, NO_LONGER_UPDATABLE, WRONG_TRANSACTION_UID, ALREADY_IN_PROGRESS,
    SCHEDULED_ONLY_BY_CREATE, NO_SUCH_UPS, NOT_IN_PROGRESS, ALREADY_COMPLETED, ALREADY_CANCELED,
    ALREADY_COMPLETED_WARNING))
_SIGNAL_CANCEL = Cell(Decision(statuses.SUCCESS, cancel_requested=True))

# PS3.4 Table CC.1.1-2. Creation also reports SCHEDULED: CC.2.4.3 sends a State Report to the global
# subscribers for every new UPS (the table cell itself only says "change state to SCHEDULED").
STATE_TABLE: dict[Event, tuple[Cell, ...]] = {
    #                                 no instance   SCHEDULED                IN PROGRESS     COMPLETED  CANCELED
    Event.N_CREATE:                   (_go(_S, _S), _0111,                   _0111,          _0111,     _0111),
    Event.TO_IN_PROGRESS:             (_C307,       _go(_P, _P, store=True), _C302,          _C300,     _C300),
    Event.TO_IN_PROGRESS_WITHOUT_TXN: (_C307,       _C301,                   _C301,          _C301,     _C301),
    Event.TO_SCHEDULED:               (_C307,       _C303,                   _C303,          _C303,     _C303),
    Event.TO_COMPLETED:               (_C307,       _C310,                   _if_met(_C),    _B306,     _C300),
    Event.TO_COMPLETED_WITHOUT_TXN:   (_C307,       _C301,                   _C301,          _C301,     _C301),
    Event.REQUEST_CANCEL:             (_C307,       _go(_X, _P, _X),         _SIGNAL_CANCEL, _C311,     _B304),
    Event.TO_CANCELED:                (_C307,       _C310,                   _if_met(_X),    _C300,     _B304),
    Event.TO_CANCELED_WITHOUT_TXN:    (_C307,       _C301,                   _C301,          _C301,     _C301),
}  # fmt: skip

# Which row a Change UPS State request is: (requested state, Transaction UID correct?).
CHANGE_STATE_EVENTS: dict[tuple[UPSState, bool], Event] = {
    (_S, True): Event.TO_SCHEDULED, (_S, False): Event.TO_SCHEDULED,
    (_P, True): Event.TO_IN_PROGRESS, (_P, False): Event.TO_IN_PROGRESS_WITHOUT_TXN,
    (_C, True): Event.TO_COMPLETED, (_C, False): Event.TO_COMPLETED_WITHOUT_TXN,
    (_X, True): Event.TO_CANCELED, (_X, False): Event.TO_CANCELED_WITHOUT_TXN,
}


def _dest(decision: Decision) -> str | None:
    return decision.new_state.value if decision.new_state else None


# Built once and never changed.
_MACHINE = build_machine(STATE_TABLE, COLUMNS, FINAL_STATES, NO_INSTANCE, _dest)


def _decide(event: Event, current: UPSState | None, final_requirements_met: bool = False) -> Decision:
    return decide(_MACHINE, event, current.value if current else NO_INSTANCE, final_requirements_met)


def parse_state(value: object) -> UPSState | None:
    """A Procedure Step State from a request, or None when it is not one of the four (CS padding ignored).
    A value that is not text (the element sent with a VR that decodes to a number or a person name) is
    none of the four either."""
    if not isinstance(value, str):
        return None
    try:
        return UPSState(value.strip())
    except ValueError:
        return None


# A Transaction UID whose value is not text (sent with a VR that decodes to a number or a person name):
# present, so not "no Transaction UID", yet never a valid UID nor equal to a stored one.
_NOT_TEXT = "<not text>"


def _clean_uid(value: object) -> str:
    """A UID from a request or the store without its padding; "" when absent or empty."""
    if value is None:
        return ""
    return value.strip("\x00 ") if isinstance(value, str) else _NOT_TEXT


def transaction_uid_correct(supplied: object, stored: str | None) -> bool:
    """The "correct Transaction UID" of Table CC.1.1-2: a valid UID equal to the stored lock, or any valid
    UID when none is stored (a SCHEDULED UPS: the performer brings a new one, CC.2.1.2)."""
    uid = _clean_uid(supplied)
    return is_uid(uid) and (not stored or uid == _clean_uid(stored))


def decide_create(exists: bool) -> Decision:
    """N-CREATE: 0111 when the SOP Instance UID is taken (every state column says so)."""
    return _decide(Event.N_CREATE, UPSState.SCHEDULED if exists else None)


def decide_change_state(current: UPSState | None, requested: object, transaction_uid: object,
                        stored_transaction_uid: str | None, final_requirements_met: bool) -> Decision:
    """N-ACTION type 1 (Change UPS State). A missing or unknown Procedure Step State (or one that is not
    text) is 0115 (N-ACTION's "invalid argument value"), except for an unknown instance, which is C307
    whatever was asked. A Transaction UID that is not text is not the correct one (C301 by the table)."""
    target = parse_state(requested)
    if target is None:
        return Decision(NO_SUCH_UPS if current is None else INVALID_ARGUMENT_VALUE)
    correct = transaction_uid_correct(transaction_uid, stored_transaction_uid)
    return _decide(CHANGE_STATE_EVENTS[target, correct], current, final_requirements_met)


def decide_request_cancel(current: UPSState | None) -> Decision:
    """N-ACTION type 2 (Request UPS Cancel). On a SCHEDULED UPS the SCP itself goes through IN PROGRESS
    to CANCELED and must first make the CANCELED Final State requirements true (CC.2.2.3; see
    ups_attributes.with_cancellation). On an IN PROGRESS UPS success only acknowledges the request; a
    service that finds no subscriber to tell may answer C312 instead (CC.2.2.3 allows a failure)."""
    return _decide(Event.REQUEST_CANCEL, current)


def decide_set(current: UPSState | None, transaction_uid: object,
               stored_transaction_uid: str | None) -> Decision:
    """N-SET (CC.2.6.3), not part of Table CC.1.1-2:
    no instance -> C307; COMPLETED or CANCELED -> C300 whatever the Transaction UID;
    IN PROGRESS -> 0000 with the stored Transaction UID, C301 when it is missing or different;
    SCHEDULED -> 0000 without a Transaction UID. With one, C310: CC.2.6.2 forbids it there but CC.2.6.3
    names no status; C310 "not in the IN PROGRESS state" is in the N-SET table and describes the
    mismatch (dcm4chee-arc answers the same; microsoft/dicom-server answers C301).
    A Transaction UID whose value is not text is one given (C310 on a SCHEDULED UPS), never the stored one."""
    if current is None:
        return Decision(NO_SUCH_UPS)
    if current.is_final:
        return Decision(NO_LONGER_UPDATABLE)
    supplied = _clean_uid(transaction_uid)
    if current is UPSState.SCHEDULED:
        return Decision(NOT_IN_PROGRESS if supplied else statuses.SUCCESS)
    matches = bool(supplied) and supplied == _clean_uid(stored_transaction_uid)
    return Decision(statuses.SUCCESS if matches else WRONG_TRANSACTION_UID)


def state_table_markdown() -> str:
    """Table CC.1.1-2 as this SCP implements it, for the conformance statement."""
    header = ("Event", "no such instance", *UPSState)
    rows = [(event.value, *(cell.text for cell in cells)) for event, cells in STATE_TABLE.items()]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
