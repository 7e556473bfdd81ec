"""Every cell of the UPS state table (PS3.4 Table CC.1.1-2) over UPS-RS, against a real server: the
PS3.18 code, the DIMSE status the Warning names, and the state afterwards. Written out here again (not
read from http_answers) so that a wrong row in the answers table fails a test."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from pydicom.uid import generate_uid

from testkit.ups import final_state_requirements, workitem
from testkit.upsrs import UpsRs, as_json

pytestmark = pytest.mark.slow

S, P, C, X = "SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"
COLUMNS = (None, S, P, C, X)


class Cell(NamedTuple):
    http: int
    status: str | None  # the DIMSE status the Warning names (None: no Warning)
    after: str | None  # the state afterwards (None: still no such workitem)


def go(http: int, after: str) -> Cell:
    return Cell(http, None, after)


NOT_FOUND = Cell(404, "C307", None)


def stays(http: int, status: str) -> tuple[Cell, ...]:
    """The same answer in the four state columns, the state unchanged."""
    return tuple(Cell(http, status, state) for state in (S, P, C, X))


# Table CC.1.1-2 as UPS-RS answers it (PS3.18 Tables 11.4.3-1, 11.7.3-1, 11.8.3-1); "met"/"unmet": the
# Final State requirements.
EXPECTED: dict[str, tuple[Cell, ...]] = {
    #                                no instance     SCHEDULED                 IN PROGRESS              COMPLETED                CANCELED
    "Create":                        (go(201, S),    Cell(409, "0111", S),     Cell(409, "0111", P),    Cell(409, "0111", C),    Cell(409, "0111", X)),
    "IN PROGRESS, correct txn":      (NOT_FOUND,     go(200, P),               Cell(409, "C302", P),    Cell(409, "C300", C),    Cell(409, "C300", X)),
    "IN PROGRESS, missing txn":      (NOT_FOUND,     *stays(400, "C301")),
    "IN PROGRESS, wrong txn":        (NOT_FOUND,     *stays(400, "C301")),
    "SCHEDULED, correct txn":        (NOT_FOUND,     *stays(409, "C303")),
    "SCHEDULED, missing txn":        (NOT_FOUND,     *stays(409, "C303")),
    "COMPLETED, correct txn, met":   (NOT_FOUND,     Cell(409, "C310", S),     go(200, C),              Cell(200, "B306", C),    Cell(409, "C300", X)),
    "COMPLETED, correct txn, unmet": (NOT_FOUND,     Cell(409, "C310", S),     Cell(409, "C304", P),    Cell(200, "B306", C),    Cell(409, "C300", X)),
    "COMPLETED, missing txn":        (NOT_FOUND,     *stays(400, "C301")),
    "COMPLETED, wrong txn":          (NOT_FOUND,     *stays(400, "C301")),
    "Request Cancellation":          (NOT_FOUND,     go(202, X),               go(202, P),              Cell(409, "C311", C),    Cell(202, "B304", X)),
    "CANCELED, correct txn, met":    (NOT_FOUND,     Cell(409, "C310", S),     go(200, X),              Cell(409, "C300", C),    Cell(200, "B304", X)),
    "CANCELED, correct txn, unmet":  (NOT_FOUND,     Cell(409, "C310", S),     Cell(409, "C304", P),    Cell(409, "C300", C),    Cell(200, "B304", X)),
    "CANCELED, missing txn":         (NOT_FOUND,     *stays(400, "C301")),
    "CANCELED, wrong txn":           (NOT_FOUND,     *stays(400, "C301")),
}  # fmt: skip

WARNINGS = {"C301 missing": "The Transaction UID is missing.", "C301": "The Transaction UID is incorrect.",
            "B304": "already in the requested state of CANCELED", "B306": "already in the requested state of COMPLETED",
            "C307": "The Target Workitem was not found.", "0111": "The Target Workitem already exists."}


def requirements(txn: str) -> dict:
    """What COMPLETED and CANCELED need (Table CC.2.5-3 Final State rows), as an Update payload."""
    mod = final_state_requirements()
    return as_json(mod)


def created(rs: UpsRs) -> str:
    response = rs.create(workitem())
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def in_state(rs: UpsRs, state: str | None, met: bool) -> tuple[str, str | None]:
    """A workitem in `state` (None: a UID nobody created) and the Transaction UID that locks it."""
    if state is None:
        return generate_uid(), None
    uid = created(rs)
    if state == S:
        return uid, None
    response, txn = rs.claim(uid)
    assert response.status_code == 200, response.text
    if met or state in (C, X):
        assert rs.update(uid, requirements(txn), txn).status_code == 200
    if state in (C, X):
        assert rs.change_state(uid, state, txn).status_code == 200
    return uid, txn


def state_of(rs: UpsRs, uid: str) -> str | None:
    response = rs.retrieve(uid)
    if response.status_code == 404:
        return None
    assert response.status_code == 200
    return response.json()[0]["00741000"]["Value"][0]


def send(rs: UpsRs, row: str, uid: str, txn: str | None, current: str | None):
    if row == "Create":
        return rs.create(workitem(), uid=uid)
    if row == "Request Cancellation":
        return rs.cancel_request(uid, {"00741238": {"vr": "LT", "Value": ["no longer needed"]}})
    target = row.split(",")[0]
    if "missing" in row:
        given = None
    elif "wrong" in row:  # nothing locks a SCHEDULED workitem: the only wrong UID there is a malformed one
        given = "not-a-uid" if current == S else generate_uid()
    else:
        given = txn or generate_uid()
    return rs.change_state(uid, target, given)


CELLS = [(row, column) for row in EXPECTED for column in range(len(COLUMNS))]


@pytest.mark.parametrize("row,column", CELLS, ids=[f"{row} @ {COLUMNS[c] or 'no instance'}" for row, c in CELLS])
def test_state_table_cell_over_upsrs(rs, row, column):
    current = COLUMNS[column]
    uid, txn = in_state(rs, current, met="unmet" not in row)
    response = send(rs, row, uid, txn, current)
    expected = EXPECTED[row][column]
    warning = response.headers.get("warning", "")
    assert response.status_code == expected.http, (response.status_code, warning)
    if expected.status is None:
        assert not warning
    else:
        assert warning.startswith("299 wfm: ") and warning.endswith(f"({expected.status})"), warning
        key = f"{expected.status} missing" if "missing" in row and expected.status == "C301" else expected.status
        if key in WARNINGS:
            assert WARNINGS[key] in warning
    assert state_of(rs, uid) == expected.after
