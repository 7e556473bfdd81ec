"""The UPS state machine against PS3.4 Table CC.1.1-2, written out again here (not read from STATE_TABLE)
so that a wrong cell in the module fails a test."""

from __future__ import annotations

from typing import Callable, NamedTuple

import pytest

from workflow.ups.rules import state as ups_state
from workflow.ups.rules.state import (STATE_TABLE, UPSState, decide_change_state, decide_create,
                                       decide_request_cancel, decide_set, state_table_markdown,
                                       transaction_uid_correct)

S, P, C, X = UPSState.SCHEDULED, UPSState.IN_PROGRESS, UPSState.COMPLETED, UPSState.CANCELED
COLUMNS = (None, S, P, C, X)  # None: no such instance
LOCK = "1.2.826.0.1.3680043.10.1.1"  # the performer's Transaction UID, stored since IN PROGRESS
OTHER = "1.2.826.0.1.3680043.10.1.2"  # another SCU's


class Outcome(NamedTuple):
    code: int
    new_state: UPSState | None = None
    reports: tuple[UPSState, ...] = ()
    cancel_requested: bool = False
    store_transaction_uid: bool = False


def answer(code: int) -> Outcome:
    return Outcome(code)


def moves(state: UPSState, *reports: UPSState, store: bool = False) -> Outcome:
    return Outcome(0x0000, state, reports, store_transaction_uid=store)


SIGNAL = Outcome(0x0000, cancel_requested=True)
E0111, C300, C301, C302, C303, C304, C307, C310, C311, B304, B306 = map(answer, (
    0x0111, 0xC300, 0xC301, 0xC302, 0xC303, 0xC304, 0xC307, 0xC310, 0xC311, 0xB304, 0xB306))

# Table CC.1.1-2, one request kind per row; "met"/"unmet": the Final State requirements.
EXPECTED: dict[str, tuple[Outcome, ...]] = {
    #                                  no instance    SCHEDULED                   IN PROGRESS    COMPLETED  CANCELED
    "N-CREATE":                        (moves(S, S),  E0111,                      E0111,         E0111,     E0111),
    "IN PROGRESS, correct txn":        (C307,         moves(P, P, store=True),    C302,          C300,      C300),
    "IN PROGRESS, missing txn":        (C307,         C301,                       C301,          C301,      C301),
    "IN PROGRESS, wrong txn":          (C307,         C301,                       C301,          C301,      C301),
    "SCHEDULED, correct txn":          (C307,         C303,                       C303,          C303,      C303),
    "SCHEDULED, missing txn":          (C307,         C303,                       C303,          C303,      C303),
    "COMPLETED, correct txn, met":     (C307,         C310,                       moves(C, C),   B306,      C300),
    "COMPLETED, correct txn, unmet":   (C307,         C310,                       C304,          B306,      C300),
    "COMPLETED, missing txn":          (C307,         C301,                       C301,          C301,      C301),
    "COMPLETED, wrong txn":            (C307,         C301,                       C301,          C301,      C301),
    "Request Cancel":                  (C307,         moves(X, P, X),             SIGNAL,        C311,      B304),
    "CANCELED, correct txn, met":      (C307,         C310,                       moves(X, X),   C300,      B304),
    "CANCELED, correct txn, unmet":    (C307,         C310,                       C304,          C300,      B304),
    "CANCELED, missing txn":           (C307,         C301,                       C301,          C301,      C301),
    "CANCELED, wrong txn":             (C307,         C301,                       C301,          C301,      C301),
}  # fmt: skip


def stored_lock(current: UPSState | None) -> str | None:
    return LOCK if current in (P, C, X) else None


def supplied(kind: str, current: UPSState | None) -> str | None:
    """The Transaction UID a request of this kind carries. A SCHEDULED UPS has no lock yet: the correct
    UID is any new valid one, a wrong one is a malformed one."""
    if "missing" in kind:
        return None
    if "wrong" in kind:
        return "not-a-uid" if current is S else OTHER
    return stored_lock(current) or OTHER


def change_state(target: str) -> Callable[[str, UPSState | None], ups_state.Decision]:
    def request(kind: str, current: UPSState | None) -> ups_state.Decision:
        return decide_change_state(current, target, supplied(kind, current), stored_lock(current),
                                   final_requirements_met="unmet" not in kind)
    return request


def request_for(kind: str) -> Callable[[str, UPSState | None], ups_state.Decision]:
    if kind == "N-CREATE":
        return lambda _, current: decide_create(exists=current is not None)
    if kind == "Request Cancel":
        return lambda _, current: decide_request_cancel(current)
    return change_state(kind.split(",")[0])


CELLS = [(kind, column) for kind in EXPECTED for column in range(len(COLUMNS))]


@pytest.mark.parametrize("kind,column", CELLS,
                         ids=[f"{kind} @ {COLUMNS[column] or 'no instance'}" for kind, column in CELLS])
def test_state_table_cell(kind: str, column: int) -> None:
    current = COLUMNS[column]
    decision = request_for(kind)(kind, current)
    expected = EXPECTED[kind][column]
    got = Outcome(decision.status.code, decision.new_state, decision.reports, decision.cancel_requested,
                  decision.store_transaction_uid)
    assert got == expected
    assert decision.clear_transaction_uid is False  # the lock outlives the Final State (module docstring)
    assert decision.accepted is (decision.status.category != "Failure")


def test_lock_kept_after_final_state_tells_a_retry_from_an_intruder() -> None:
    """The performer repeating its COMPLETED after a lost response gets B306; anyone else C301."""
    assert decide_change_state(C, "COMPLETED", LOCK, LOCK, True).status.code == 0xB306
    assert decide_change_state(C, "COMPLETED", OTHER, LOCK, True).status.code == 0xC301
    assert decide_change_state(X, "CANCELED", LOCK, LOCK, True).status.code == 0xB304


def test_canceled_by_request_has_no_lock_so_any_valid_uid_is_correct() -> None:
    """Canceled from SCHEDULED by the SCP: nobody holds a lock, a valid UID meets the 'correct' rows."""
    assert decide_change_state(X, "IN PROGRESS", OTHER, None, False).status.code == 0xC300
    assert decide_change_state(X, "IN PROGRESS", None, None, False).status.code == 0xC301


def test_second_performer_cannot_take_an_in_progress_ups() -> None:
    """CC.2.1.2 note 2: the second SCU's own new UID is not the stored one."""
    assert decide_change_state(P, "IN PROGRESS", OTHER, LOCK, False).status.code == 0xC301
    assert decide_change_state(P, "IN PROGRESS", LOCK, LOCK, False).status.code == 0xC302


@pytest.mark.parametrize("requested", ["STARTED", "in progress", "", None, "IN_PROGRESS", "SCHEDULED\\COMPLETED"])
@pytest.mark.parametrize("current", [S, P, C, X])
def test_unknown_requested_state_is_an_invalid_argument(current: UPSState, requested: str | None) -> None:
    assert decide_change_state(current, requested, LOCK, LOCK, True).status.code == 0x0115


def test_unknown_requested_state_on_no_instance_is_c307() -> None:
    assert decide_change_state(None, "STARTED", LOCK, None, True).status.code == 0xC307


def test_requested_state_padding_is_ignored() -> None:
    assert decide_change_state(P, "COMPLETED ", LOCK, LOCK, True).new_state is C


@pytest.mark.parametrize("current,txn,stored,code", [
    (None, None, None, 0xC307),
    (S, None, None, 0x0000),
    (S, "", None, 0x0000),
    (S, OTHER, None, 0xC310),  # CC.2.6.2 forbids a Transaction UID on a SCHEDULED UPS
    (P, LOCK, LOCK, 0x0000),
    (P, None, LOCK, 0xC301),
    (P, OTHER, LOCK, 0xC301),
    (C, LOCK, LOCK, 0xC300),
    (C, None, LOCK, 0xC300),
    (X, LOCK, LOCK, 0xC300),
    (X, None, None, 0xC300),
])
def test_decide_set(current, txn, stored, code) -> None:
    decision = decide_set(current, txn, stored)
    assert decision.status.code == code
    assert decision.new_state is None and not decision.reports and not decision.store_transaction_uid


def test_request_cancel_on_scheduled_passes_through_in_progress() -> None:
    decision = decide_request_cancel(S)
    assert decision.reports == (P, X) and decision.new_state is X and decision.status.code == 0
    assert not decision.cancel_requested


def test_request_cancel_on_in_progress_only_signals() -> None:
    decision = decide_request_cancel(P)
    assert decision.cancel_requested and decision.new_state is None and not decision.reports


@pytest.mark.parametrize("supplied_uid,stored,correct", [
    (LOCK, None, True), (LOCK, LOCK, True), (LOCK + "\x00", LOCK, True), (OTHER, LOCK, False),
    (None, None, False), ("", LOCK, False), ("1.2.abc", None, False), ("1." + "2" * 70, None, False),
])
def test_transaction_uid_correct(supplied_uid, stored, correct) -> None:
    assert transaction_uid_correct(supplied_uid, stored) is correct


def test_state_table_shape_and_rendering() -> None:
    assert len(STATE_TABLE) == 9 and all(len(cells) == 5 for cells in STATE_TABLE.values())
    lines = state_table_markdown().splitlines()
    assert lines[0] == "| Event | no such instance | SCHEDULED | IN PROGRESS | COMPLETED | CANCELED |"
    assert len(lines) == 2 + 9 and all(line.count(" | ") == 5 for line in lines[2:])
    assert "if Final State requirements met: report COMPLETED, → COMPLETED; else failure C304" in lines[6]
    assert "report IN PROGRESS, report CANCELED, → CANCELED" in lines[8]


def test_statuses_are_well_formed() -> None:
    for status in ups_state.UPS_STATUSES:
        expected = {"B": "Warning", "C": "Failure", "0": "Failure"}[status.hex[0]]
        assert status.category == expected and status.meaning
    assert len({s.code for s in ups_state.UPS_STATUSES}) == len(ups_state.UPS_STATUSES)


def test_final_states_are_final_in_the_machine() -> None:
    assert {name for name, state in ups_state._MACHINE.states.items() if state.final} == {"COMPLETED", "CANCELED"}
    assert S.is_final is False and C.is_final and X.is_final
