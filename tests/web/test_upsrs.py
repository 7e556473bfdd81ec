"""UPS-RS resources against a real server: each transaction of PS3.18 chapter 11, and every row of the
answers table (ups/http_answers.py) provoked over HTTP with its code and Warning."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from testkit.http import EventSocket
from testkit.ups import FILTERED, GLOBAL, workitem
from testkit.upsrs import UpsRs, as_json, uids
from workflow.kernel import statuses
from workflow.kernel.outcome import Outcome
from workflow.ups import http_answers as answers
from workflow.ups.http import reply
from workflow.ups.rules.matching import IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS

pytestmark = pytest.mark.slow

STATE, TXN, SOP_INSTANCE = "00741000", "00081195", "00080018"
EVENT_TYPE, AFFECTED_UID = "00001002", "00001000"


def create(rs: UpsRs, **overrides) -> str:
    response = rs.create(workitem(**overrides))
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def claimed(rs: UpsRs, **overrides) -> tuple[str, str]:
    uid = create(rs, **overrides)
    response, txn = rs.claim(uid)
    assert response.status_code == 200, response.text
    return uid, txn


def first(ds: dict, tag: str):
    return (ds.get(tag, {}).get("Value") or [None])[0]


# ------------------------------------------------------------------ Create and Retrieve

def test_create_answers_201_with_location_and_retrieve_finds_it(rs, app):
    uid = generate_uid()
    response = rs.create(workitem(), uid=uid)
    assert response.status_code == 201 and not response.headers.get("warning")
    assert response.headers["location"] == f"http://127.0.0.1:{app.http.port}/dicom-web/workitems/{uid}"
    got = rs.retrieve(uid)
    assert got.status_code == 200 and got.headers["content-type"] == "application/dicom+json"
    (ds,) = got.json()
    assert first(ds, SOP_INSTANCE) == uid and first(ds, STATE) == "SCHEDULED"


def test_create_takes_the_uid_from_the_payload_or_assigns_one(rs):
    uid = generate_uid()
    payload = as_json(workitem())
    payload[SOP_INSTANCE] = {"vr": "UI", "Value": [uid]}
    assert rs.create([payload]).headers["location"].endswith(f"/{uid}")  # an array of one data set too
    assigned = rs.create(workitem())
    assert assigned.status_code == 201 and rs.retrieve(assigned.headers["location"].rsplit("/", 1)[1]).status_code == 200
    clash = rs.create(payload, uid=generate_uid())
    assert clash.status_code == 400 and "differ" in clash.headers["warning"]


def test_retrieve_never_returns_the_transaction_uid(rs):
    uid, txn = claimed(rs)
    (ds,) = rs.retrieve(uid).json()
    assert first(ds, STATE) == "IN PROGRESS"
    assert TXN not in ds and txn not in rs.retrieve(uid).text


# ------------------------------------------------------------------ Update

@pytest.mark.parametrize("name", ["transaction-uid", "Transaction-uid", "Transaction-UID", "TRANSACTION-UID",
                                  "transaction", "Transaction", "transactionuid", "transaction_uid"])
def test_update_accepts_the_transaction_uid_parameter_under_any_spelling(rs, name):
    uid, txn = claimed(rs)
    label = f"renamed by {name}"
    response = rs.update(uid, {"00741204": {"vr": "LO", "Value": [label]}}, txn, name=name)
    assert response.status_code == 200, response.headers.get("warning")
    assert first(rs.retrieve(uid).json()[0], "00741204") == label


def test_update_of_a_scheduled_workitem_needs_no_transaction_uid(rs):
    uid = create(rs)
    assert rs.update(uid, {"00741204": {"vr": "LO", "Value": ["before the claim"]}}, None).status_code == 200


# ------------------------------------------------------------------ Request Cancellation

def test_cancellation_of_a_claimed_workitem_reaches_its_subscriber(rs, app):
    uid, _ = claimed(rs)
    assert rs.subscribe(uid, "RSCANCELWATCH").status_code == 201
    with EventSocket(app, "RSCANCELWATCH") as socket:
        assert socket.next()[EVENT_TYPE]["Value"] == [1]  # the State Report a subscription starts with
        response = rs.cancel_request(uid, {"00741238": {"vr": "LT", "Value": ["patient left"]}})
        assert response.status_code == 202
        report = socket.next()
    assert report[EVENT_TYPE]["Value"] == [2] and report[AFFECTED_UID]["Value"] == [uid]
    assert first(report, "00741238") == "patient left" and first(report, "00741236") == "anonymous"
    assert first(rs.retrieve(uid).json()[0], STATE) == "IN PROGRESS"  # only the performer cancels it


# ------------------------------------------------------------------ Search

def test_search_by_keyword_tag_and_dotted_paths_in_either_form(rs):
    label = f"search-{generate_uid()[-10:]}"
    a = create(rs, WorklistLabel=label)
    b = create(rs, WorklistLabel=label, PatientID="PIDB")
    a, b = sorted((a, b))  # the same start time: C-FIND's order is then the UID's
    for params in ({"WorklistLabel": label}, {"00741202": label}):
        assert uids(rs.search(params)) == [a, b]
    for key in ("ScheduledStationNameCodeSequence.CodeValue", "00404025.00080100",
                "ScheduledStationNameCodeSequence.00080100", "00404025.CodeValue"):
        assert uids(rs.search({"WorklistLabel": label, key: "STATION1"})) == [a, b]
        assert rs.search({"WorklistLabel": label, key: "ELSEWHERE"}).status_code == 204
    assert len(uids(rs.search({"WorklistLabel": label, "PatientID": "PIDB"}))) == 1
    assert uids(rs.search({"WorklistLabel": label, "PatientName": "doe^jane"})) == [a, b]  # PN: case-insensitive


def test_search_answers_the_default_keys_and_includefield(rs):
    label = f"keys-{generate_uid()[-10:]}"
    create(rs, WorklistLabel=label)
    (plain,) = rs.search({"WorklistLabel": label}).json()
    assert {"00080016", "00080018", STATE, "00741200", "00404005", "00404041"} <= set(plain)
    assert "00100020" not in plain and TXN not in plain
    (more,) = rs.search([("WorklistLabel", label), ("includefield", "PatientID,00100010"),
                         ("includefield", "ScheduledStationNameCodeSequence")]).json()
    assert first(more, "00100020") == "PID1" and first(more, "00100010") == {"Alphabetic": "Doe^Jane"}
    assert more["00404025"]["Value"][0]["00080100"]["Value"] == ["STATION1"]
    (everything,) = rs.search({"WorklistLabel": label, "includefield": "all"}).json()
    assert {"00100020", "00100030", "0020000D", "00404025"} <= set(everything) and TXN not in everything


def test_search_pages_with_limit_and_offset(rs):
    label = f"page-{generate_uid()[-10:]}"
    made = sorted(create(rs, WorklistLabel=label) for _ in range(5))  # same start: C-FIND's order is the UID
    assert uids(rs.search({"WorklistLabel": label, "limit": "2"})) == made[:2]
    assert uids(rs.search({"WorklistLabel": label, "limit": "2", "offset": "2"})) == made[2:4]
    assert uids(rs.search({"WorklistLabel": label, "offset": "4"})) == made[4:]
    assert rs.search({"WorklistLabel": label, "offset": "5"}).status_code == 204


def test_search_answers_at_most_the_maximum_and_says_so(rs, monkeypatch):
    import workflow.ups.http as ups_http
    label = f"most-{generate_uid()[-10:]}"
    made = sorted(create(rs, WorklistLabel=label) for _ in range(4))
    monkeypatch.setattr(ups_http, "MAX_RESULTS", 3)  # the server runs in this process
    first_page = rs.search({"WorklistLabel": label})
    assert uids(first_page) == made[:3] and "exceeded the maximum" in first_page.headers["warning"]
    rest = rs.search({"WorklistLabel": label, "offset": "3"})
    assert uids(rest) == made[3:] and "warning" not in rest.headers
    assert "warning" not in rs.search({"WorklistLabel": label, "limit": "3"}).headers


def test_search_says_fuzzy_matching_is_not_supported(rs):
    label = f"fuzzy-{generate_uid()[-10:]}"
    create(rs, WorklistLabel=label)
    response = rs.search({"WorklistLabel": label, "fuzzymatching": "true"})
    assert response.status_code == 200 and "fuzzymatching parameter is not supported" in response.headers["warning"]


# ------------------------------------------------------------------ Subscriptions

def test_subscribe_answers_the_websocket_and_events_arrive_on_it(rs, app):
    uid = create(rs)
    response = rs.subscribe(uid, "RSWATCH1")
    assert response.status_code == 201
    assert response.headers["content-location"] == f"ws://127.0.0.1:{app.http.port}/dicom-web/subscribers/RSWATCH1"
    with EventSocket(app, "RSWATCH1") as socket:
        assert first(socket.next(), STATE) == "SCHEDULED"  # where it stands when subscribed
        rs.claim(uid)
        report = socket.next()
    assert report[AFFECTED_UID]["Value"] == [uid] and first(report, STATE) == "IN PROGRESS"


def test_filtered_worklist_subscription_hears_only_what_matches(rs, app):
    label = f"filtered-{generate_uid()[-10:]}"
    response = rs.subscribe(FILTERED, "RSFILTER", filter=f"WorklistLabel={label}", deletionlock="false")
    assert response.status_code == 201
    with EventSocket(app, "RSFILTER") as socket:
        create(rs, WorklistLabel="someone else's")
        mine = create(rs, WorklistLabel=label)
        report = socket.next()
    assert report[AFFECTED_UID]["Value"] == [mine]
    assert rs.unsubscribe(FILTERED, "RSFILTER").status_code == 200


def test_global_subscription_with_deletion_lock_then_suspend_and_unsubscribe(rs, app):
    label = f"global-{generate_uid()[-10:]}"
    before = create(rs, WorklistLabel=label)
    assert rs.subscribe(GLOBAL, "RSGLOBAL", deletionlock="true").status_code == 201
    with EventSocket(app, "RSGLOBAL") as socket:
        # A deletion lock brings a State Report for every workitem not yet final, this one among them.
        seen = set()
        while before not in seen:
            seen.add(socket.next()[AFFECTED_UID]["Value"][0])
        assert rs.suspend(GLOBAL, "RSGLOBAL").status_code == 200
        assert rs.unsubscribe(GLOBAL, "RSGLOBAL").status_code == 200


# ------------------------------------------------------------------ every row of the answers table, over HTTP

def _bad_priority(rs):
    return rs.create(workitem(ScheduledProcedureStepPriority="URGENT"))


def _update(rs, ds, *, claim=True, txn=None, uid=None):
    if uid is None:
        uid, lock = claimed(rs) if claim else (create(rs), None)
        txn = lock if txn is None else txn
    return rs.update(uid, ds, txn or None)


def _state(rs, target, *, from_state="IN PROGRESS", txn="lock", uid=None):
    if uid is None:
        uid, lock = claimed(rs) if from_state != "SCHEDULED" else (create(rs), None)
        txn = lock if txn == "lock" else txn
    return rs.change_state(uid, target, txn)


def _completed(rs):
    from test_upsrs_state import requirements  # the Final State payload, written once
    uid, txn = claimed(rs)
    assert rs.update(uid, requirements(txn), txn).status_code == 200
    assert rs.change_state(uid, "COMPLETED", txn).status_code == 200
    return uid, txn


def _canceled(rs):
    uid = create(rs)
    assert rs.cancel_request(uid).status_code == 202
    return uid


def _completed_pair(rs, target: str) -> tuple[str, str, str]:
    uid, txn = _completed(rs)
    return uid, target, txn


LABEL = {"00741204": {"vr": "LO", "Value": ["x"]}}
CASES = {
    (answers.CREATE, "0000", ""): lambda rs: rs.create(workitem()),
    (answers.CREATE, "B300", ""): lambda rs: rs.create(workitem(WorklistLabel=...)),
    (answers.CREATE, "-", ""): lambda rs: rs.create({"00741000": "not an element"}),
    (answers.CREATE, "0106", ""): _bad_priority,
    (answers.CREATE, "0120", ""): lambda rs: rs.create(workitem(ScheduledProcedureStepPriority=...)),
    (answers.CREATE, "0121", ""): lambda rs: rs.create(workitem(ProcedureStepLabel=None)),
    (answers.CREATE, "C309", ""): lambda rs: rs.create(workitem(ProcedureStepState="IN PROGRESS")),
    (answers.CREATE, "0111", ""): lambda rs: rs.create(workitem(), uid=create(rs)),
    (answers.RETRIEVE, "0000", ""): lambda rs: rs.retrieve(create(rs)),
    (answers.RETRIEVE, "C307", ""): lambda rs: rs.retrieve(generate_uid()),
    (answers.UPDATE, "0000", ""): lambda rs: _update(rs, LABEL),
    (answers.UPDATE, "-", ""): lambda rs: rs.http.post(f"/dicom-web/workitems/{create(rs)}", content=b"{not json"),
    (answers.UPDATE, "0105", ""): lambda rs: _update(rs, {"00100021": {"vr": "LO", "Value": ["HOSP"]}}),
    (answers.UPDATE, "0106", ""): lambda rs: _update(rs, {"00741200": {"vr": "CS", "Value": ["URGENT"]}}),
    (answers.UPDATE, "0121", ""): lambda rs: _update(rs, {"00404025": {"vr": "SQ", "Value": [
        {"00080100": {"vr": "SH", "Value": ["X"]}, "00080102": {"vr": "SH", "Value": ["99"]}}]}}),
    (answers.UPDATE, "C300", ""): lambda rs: _update(rs, LABEL, uid=_completed(rs)[0], txn=None),
    (answers.UPDATE, "C301", answers.MISSING): lambda rs: _update(rs, LABEL, txn=""),
    (answers.UPDATE, "C301", ""): lambda rs: _update(rs, LABEL, txn=generate_uid()),
    (answers.UPDATE, "C310", ""): lambda rs: _update(rs, LABEL, claim=False, txn=generate_uid()),
    (answers.UPDATE, "C307", ""): lambda rs: rs.update(generate_uid(), LABEL, generate_uid()),
    (answers.CHANGE_STATE, "0000", ""): lambda rs: _state(rs, "IN PROGRESS", from_state="SCHEDULED",
                                                          txn=generate_uid()),
    (answers.CHANGE_STATE, "B304", ""): lambda rs: rs.change_state(_canceled(rs), "CANCELED", generate_uid()),
    (answers.CHANGE_STATE, "B306", ""): lambda rs: rs.change_state(*_completed_pair(rs, "COMPLETED")),
    (answers.CHANGE_STATE, "-", ""): lambda rs: _state(rs, "PAUSED"),
    (answers.CHANGE_STATE, "C301", answers.MISSING): lambda rs: _state(rs, "COMPLETED", txn=None),
    (answers.CHANGE_STATE, "C301", ""): lambda rs: _state(rs, "COMPLETED", txn=generate_uid()),
    (answers.CHANGE_STATE, "C300", ""): lambda rs: rs.change_state(*_completed_pair(rs, "IN PROGRESS")),
    (answers.CHANGE_STATE, "C302", ""): lambda rs: _state(rs, "IN PROGRESS"),
    (answers.CHANGE_STATE, "C303", ""): lambda rs: _state(rs, "SCHEDULED"),
    (answers.CHANGE_STATE, "C304", ""): lambda rs: _state(rs, "COMPLETED"),
    (answers.CHANGE_STATE, "C310", ""): lambda rs: _state(rs, "COMPLETED", from_state="SCHEDULED",
                                                          txn=generate_uid()),
    (answers.CHANGE_STATE, "C307", ""): lambda rs: rs.change_state(generate_uid(), "IN PROGRESS", generate_uid()),
    (answers.CANCEL, "0000", ""): lambda rs: rs.cancel_request(create(rs)),
    (answers.CANCEL, "B304", ""): lambda rs: rs.cancel_request(_canceled(rs)),
    (answers.CANCEL, "-", ""): lambda rs: rs.http.post(f"/dicom-web/workitems/{create(rs)}/cancelrequest",
                                                       content=b"[1, 2]"),
    (answers.CANCEL, "C311", ""): lambda rs: rs.cancel_request(_completed(rs)[0]),
    (answers.CANCEL, "C307", ""): lambda rs: rs.cancel_request(generate_uid()),
    (answers.SEARCH, "0000", ""): lambda rs: rs.search({"SOPInstanceUID": create(rs)}),
    (answers.SEARCH, "0000", answers.NO_MATCH): lambda rs: rs.search({"PatientID": "NOBODY-AT-ALL"}),
    (answers.SEARCH, "-", ""): lambda rs: rs.search({"NoSuchKeyword": "x"}),
    (answers.SEARCH, "A900", ""): lambda rs: rs.search({"ScheduledProcedureStepStartDateTime": "20261124-20261123"}),
    (answers.SUBSCRIBE, "0000", ""): lambda rs: rs.subscribe(create(rs), "ROWS1"),
    (answers.SUBSCRIBE, "-", ""): lambda rs: rs.subscribe(GLOBAL, "ROWS1", deletionlock="maybe"),
    (answers.SUBSCRIBE, "0115", ""): lambda rs: rs.subscribe(FILTERED, "ROWS1",
                                                             filter="ScheduledProcedureStepStartDateTime=2026x"),
    (answers.SUBSCRIBE, "C307", ""): lambda rs: rs.subscribe(generate_uid(), "ROWS1"),
    (answers.UNSUBSCRIBE, "0000", ""): lambda rs: rs.unsubscribe(GLOBAL, "ROWS1"),
    (answers.UNSUBSCRIBE, "-", ""): lambda rs: rs.unsubscribe(GLOBAL, "A" * 17),
    (answers.UNSUBSCRIBE, "C307", ""): lambda rs: rs.unsubscribe(generate_uid(), "ROWS1"),
    (answers.SUSPEND, "0000", ""): lambda rs: rs.suspend(GLOBAL, "ROWS1"),
    (answers.SUSPEND, "-", ""): lambda rs: rs.http.post(f"/dicom-web/workitems/{GLOBAL}/subscribers/ROWS1/suspend",
                                                        params={"deletionlock": "true"}),
    (answers.SUSPEND, "C307", ""): lambda rs: rs.suspend(create(rs), "ROWS1"),
}
LIVE = [row for row in answers.ANSWERS if row.status != statuses.PROCESSING_FAILURE]


def _key(row: answers.Answer) -> tuple[str, str, str]:
    return row.transaction, row.status_text, row.variant


@pytest.mark.parametrize("row", LIVE, ids=["/".join(filter(None, _key(r))) for r in LIVE])
def test_every_answer_over_http(rs, row):
    response = CASES[_key(row)](rs)
    warning = response.headers.get("warning", "")
    assert response.status_code == row.http, (response.status_code, warning, response.text[:300])
    if row.status is None:
        assert warning.startswith("299 wfm: ")
    elif row.warning is None:
        assert not warning
    else:
        assert warning.startswith(f"299 wfm: {row.warning.rstrip('.')}") and warning.endswith(f"({row.status.hex})")
    if response.status_code >= 400 and row.status is not None:
        assert response.json()["status"] == row.status.hex


def test_every_row_has_a_case_and_every_case_a_row():
    assert set(CASES) == {_key(row) for row in LIVE}
    assert len({_key(row) for row in answers.ANSWERS}) == len(answers.ANSWERS)  # one row per answer


@pytest.mark.parametrize("row", answers.ANSWERS, ids=["/".join(filter(None, _key(r))) for r in answers.ANSWERS])
def test_every_answer_maps_as_its_row_says(row):
    """The mapping alone, every row (the database failure among them): code, Warning, DIMSE status."""
    outcome = Outcome(row.status, comment="detail") if row.status else None
    response = reply(row.transaction, outcome, variant=row.variant, detail="what is wrong")
    assert response.status_code == row.http
    text = response.headers.get("warning")
    if row.status is None:
        assert text == "299 wfm: what is wrong"
    elif row.warning:
        assert text.startswith(f"299 wfm: {row.warning.rstrip('.')}") and text.endswith(f"({row.status.hex})")


def test_a_status_the_table_lacks_is_never_a_success():
    odd = Outcome(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)
    assert reply(answers.CREATE, odd).status_code == 400
    assert reply(answers.RETRIEVE, Outcome(statuses.SUCCESS), body=[{}]).status_code == 200
