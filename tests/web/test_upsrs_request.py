"""UPS-RS request parsing (ups/http_request.py), pure: query parameters into a C-FIND Identifier and back,
the Transaction UID under its many names, subscriptions and payloads; what is malformed is BadRequest."""

from __future__ import annotations

import pytest

from workflow.ups import http_request as rq

STATION_CODE = {"00404025": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["CT1"]},
                                                    "00080102": {"vr": "SH", "Value": ["99HOSP"]}}]}}


@pytest.mark.parametrize("name", ["transaction-uid", "Transaction-uid", "TRANSACTION-UID", "transaction",
                                  "Transaction", "transactionuid", "transaction_uid", "Transaction_UID"])
def test_the_transaction_uid_under_every_name(name):
    assert rq.transaction_uid([("other", "x"), (name, " 1.2.3 ")]) == "1.2.3"


def test_two_different_transaction_uids_are_refused():
    assert rq.transaction_uid([("transaction", "1.2"), ("transaction-uid", "1.2")]) == "1.2"
    with pytest.raises(rq.BadRequest):
        rq.transaction_uid([("transaction", "1.2"), ("transaction-uid", "1.3")])


@pytest.mark.parametrize("path", ["ScheduledStationNameCodeSequence.CodeValue", "00404025.00080100",
                                  "00404025.CodeValue", "ScheduledStationNameCodeSequence.00080100"])
def test_dotted_paths_in_either_form(path):
    search = rq.parse_search([(path, "CT1"), ("00404025.CodingSchemeDesignator", "99HOSP")], (), ())
    assert search.identifier == STATION_CODE


def test_values_take_the_shape_of_their_vr():
    ident = rq.parse_search([("PatientName", "Doe^J*"), ("SOPInstanceUID", "1.2,1.3\\1.4"), ("PatientID", ""),
                             ("ScheduledProcedureStepStartDateTime", "20261123-20261124")], (), ()).identifier
    assert ident["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^J*"}]}
    assert ident["00080018"] == {"vr": "UI", "Value": ["1.2", "1.3", "1.4"]}
    assert ident["00100020"] == {"vr": "LO"}  # a return key
    assert ident["00404005"] == {"vr": "DT", "Value": ["20261123-20261124"]}


def test_includefield_limit_offset_and_default_keys():
    search = rq.parse_search([("includefield", "PatientID,00100030"), ("includefield", "all"), ("limit", "5"),
                              ("offset", "2"), ("fuzzymatching", "true"), ("WorklistLabel", "R")],
                             ("00080018",), ("00404025",))
    assert search.limit == 5 and search.offset == 2 and len(search.warnings) == 1
    assert set(search.identifier) == {"00741202", "00100020", "00100030", "00080018", "00404025"}
    assert search.identifier["00741202"]["Value"] == ["R"]


@pytest.mark.parametrize("params", [
    [("NoSuchKeyword", "x")], [("0010002G", "x")], [("PatientID.CodeValue", "x")], [("limit", "0")],
    [("limit", "ten")], [("offset", "-1")], [("fuzzymatching", "maybe")], [("PatientID", "A"), ("00100020", "B")],
    [("ScheduledStationNameCodeSequence", "CT1")], [("99990010", "x")],
], ids=["keyword", "tag", "not a sequence", "limit 0", "limit text", "offset", "fuzzy", "twice", "sequence value",
        "private tag"])
def test_malformed_searches_are_bad_requests(params):
    with pytest.raises(rq.BadRequest):
        rq.parse_search(params, (), ())


def test_query_params_is_the_inverse_of_parse_search():
    ident = {"00741202": {"vr": "LO", "Value": ["R"]}, "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe*"}]},
             "00080018": {"vr": "UI", "Value": ["1.2", "1.3"]}, "00100020": {"vr": "LO"},
             "00404021": {"vr": "SQ", "Value": []}, **STATION_CODE}
    params = rq.query_params(ident)
    assert ("ScheduledStationNameCodeSequence.CodeValue", "CT1") in params
    back = rq.parse_search(params, (), ()).identifier
    assert back == dict(ident, **{"00404021": {"vr": "SQ"}})  # an empty sequence: a return key either way


def test_subscriptions():
    info = rq.subscription(rq.FILTERED_UID, "WATCHER", [("deletionlock", "TRUE"),
                                                        ("filter", "WorklistLabel=R,PatientID=P1")], subscribing=True)
    assert info["00741234"]["Value"] == ["WATCHER"] and info["00741230"]["Value"] == ["TRUE"]
    assert info["00741202"]["Value"] == ["R"] and info["00100020"]["Value"] == ["P1"]
    assert rq.subscription(rq.GLOBAL_UID, "W", [], subscribing=True)["00741230"]["Value"] == ["FALSE"]
    for target, ae, params, subscribing in [
        (rq.GLOBAL_UID, "W", [("filter", "PatientID=1")], True),  # filter: Filtered Worklist only
        (rq.FILTERED_UID, "W", [("filter", "PatientID")], True),
        (rq.GLOBAL_UID, "W", [("deletionlock", "yes")], True),
        (rq.GLOBAL_UID, "A" * 17, [], True),
        (rq.GLOBAL_UID, "A\\B", [], True),
        (rq.GLOBAL_UID, "W", [("deletionlock", "true")], False),  # suspend/unsubscribe take none
    ]:
        with pytest.raises(rq.BadRequest):
            rq.subscription(target, ae, params, subscribing=subscribing)


def test_payloads_must_be_dicom_json():
    assert rq.check_dataset({"00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}) == {
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}
    assert "0020000D" in rq.check_dataset({"0020000d": {"vr": "UI", "Value": ["1.2"]}})
    for bad in ([], {"PatientID": {"vr": "LO"}}, {"00100020": "P1"}, {"00100020": {"Value": ["P1"]}},
                {"00100020": {"vr": "LO", "Value": "P1"}}, {"00100020": {"vr": "LO", "Value": [{"a": 1}]}},
                {"00404025": {"vr": "SQ", "Value": ["item"]}}, {"00100020": {"vr": "LO", "Value": [True]}}):
        with pytest.raises(rq.BadRequest):
            rq.check_dataset(bad)


def test_change_state_needs_a_state():
    assert rq.change_state({"00741000": {"vr": "CS", "Value": ["COMPLETED"]}})
    for bad in ({}, {"00741000": {"vr": "CS", "Value": ["DONE"]}}, {"00741000": {"vr": "CS"}}):
        with pytest.raises(rq.BadRequest):
            rq.change_state(bad)
