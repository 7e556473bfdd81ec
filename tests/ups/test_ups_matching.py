"""UPS C-FIND matching: the parsed query and date/time normalisation (pure), then the SQL on SQLite and
PostgreSQL against workitems indexed with index_workitem."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, keyword_for_tag
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from testkit.db import query_plan
from workflow.ups.rules.matching import (
    MATCHING_KEYS,
    RANGE,
    SEQUENCE,
    SINGLE,
    UID_LIST,
    UNIVERSAL,
    UPS_PUSH_SOP_CLASS_UID,
    WILDCARD,
    QueryRejected,
    ReturnKey,
    iter_matching_keys,
    normalize_da,
    normalize_dt,
    normalize_tm,
    parse_query,
)
from workflow.store import migrate
from workflow.store.engine import make_engine
from workflow.ups.index import changed_columns, index_workitem, sequences_changed
from workflow.ups.tables import Workitem, WorkitemSeqItem
from workflow.ups.query import WildcardMatch, folded_prefix_range, glob_pattern, like_pattern, matching_select

# ---------------------------------------------------------------------------------------------------
# DICOM JSON helpers


def el(vr, *values):
    out = {"vr": vr}
    if values:
        out["Value"] = list(values)
    return out


def pn(name):
    return el("PN", {"Alphabetic": name})


def seq(*items):
    return el("SQ", *items)


def code(value, scheme="99WFM", meaning=None):
    item = {"00080100": el("SH", value), "00080102": el("SH", scheme)}
    if meaning:
        item["00080104"] = el("LO", meaning)
    return item


def performer(code_items=(), name=None, org=None):
    item = {}
    if code_items:
        item["00404009"] = seq(*code_items)
    if name:
        item["00404037"] = pn(name)
    if org:
        item["00404036"] = el("LO", org)
    return item


def request(accession, *, study=None, issuer=None, rp_id=None, service=None, description=None):
    item = {"00080050": el("SH", accession)}
    if study:
        item["0020000D"] = el("UI", study)
    if issuer:
        item["00080051"] = seq({"00400031": el("UT", issuer)})
    if rp_id:
        item["00401001"] = el("SH", rp_id)
    if service:
        item["00321033"] = el("LO", service)
    if description:
        item["00321060"] = el("LO", description)
    return item


# ---------------------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize("value, lower, upper", [
    ("2026", "20260101000000.000000", "20261231235959.999999"),
    ("202602", "20260201000000.000000", "20260228235959.999999"),
    ("202402", "20240201000000.000000", "20240229235959.999999"),
    ("20261123", "20261123000000.000000", "20261123235959.999999"),
    ("2026112310", "20261123100000.000000", "20261123105959.999999"),
    ("202611231030", "20261123103000.000000", "20261123103059.999999"),
    ("20261123103015", "20261123103015.000000", "20261123103015.999999"),
    ("20261123103015.5", "20261123103015.500000", "20261123103015.599999"),
    ("20261123103015.123456", "20261123103015.123456", "20261123103015.123456"),
    ("20261123103015+0100", "20261123103015.000000", "20261123103015.999999"),
    ("20261123-0500", "20261123000000.000000", "20261123235959.999999"),
    (" 20261123 ", "20261123000000.000000", "20261123235959.999999"),
])
def test_normalize_dt(value, lower, upper):
    assert normalize_dt(value) == lower
    assert normalize_dt(value, upper=True) == upper


@pytest.mark.parametrize("value", [
    "", "202", "20261", "2026112", "20261323", "20260230", "2026112324", "202611231060",
    "20261123103061", "20261123.5", "20261123103015.1234567", "20261123103015+1500",
    "20261123103015+01", "2026-11-23", "abcd", "20261123T1030",
])
def test_normalize_dt_rejects(value):
    with pytest.raises(ValueError):
        normalize_dt(value)


def test_normalize_da_and_tm():
    assert normalize_da("19700101") == "19700101"
    assert normalize_da("1970.01.01") == "19700101"  # ACR-NEMA form
    for bad in ("1970", "19701301", "19700230", "1970-01-01", ""):
        with pytest.raises(ValueError):
            normalize_da(bad)
    assert normalize_tm("10") == "100000.000000"
    assert normalize_tm("10", upper=True) == "105959.999999"
    assert normalize_tm("1030") == "103000.000000"
    assert normalize_tm("103015.25", upper=True) == "103015.259999"
    assert normalize_tm("10:30:15.5") == "103015.500000"  # ACR-NEMA form
    for bad in ("1", "2400", "1060", "10.5", "103015.1234567", ""):
        with pytest.raises(ValueError):
            normalize_tm(bad)


def test_normalized_dt_sorts_as_time():
    in_time_order = ["2026", "20261123000000.000001", "2026112301", "20261123235959.999", "20261124", "2027"]
    assert sorted(in_time_order, key=normalize_dt) == in_time_order
    assert normalize_dt("2026112300") == normalize_dt("20261123") == normalize_dt("20261123000000.0")


# ---------------------------------------------------------------------------------------------------
# parse_query


def test_matching_keys_agree_with_the_dictionary():
    seen = 0
    for _path, key in iter_matching_keys():
        assert keyword_for_tag(int(key.tag, 16)) == key.keyword
        assert dictionary_VR(int(key.tag, 16)) == key.vr
        assert key.key_type in ("U", "R", "O")
        assert key.where
        seen += 1
    assert seen > 40
    tags = [k.tag for k in MATCHING_KEYS]
    assert len(tags) == len(set(tags))


def test_parse_kinds():
    q = parse_query({
        "00080018": el("UI", "1.2.3", "1.2.4"),
        "0020000D": el("UI", "1.2.5"),
        "00741204": el("LO", "CT*"),
        "00741202": el("LO", "CT"),
        "00100010": pn("doe^john"),
        "00100020": el("LO"),
        "00404005": el("DT", "20261123-"),
        "00404011": el("DT", "20261123"),
        "00404025": seq(code("ST1")),
        "00404026": seq(),
        "00404027": seq({"00080100": el("SH")}),
        "00741200": el("CS", "*"),
    })
    kinds = {c.tag: c.kind for c in q.conditions}
    assert kinds == {
        "00080018": UID_LIST, "0020000D": SINGLE, "00741204": WILDCARD, "00741202": SINGLE,
        "00100010": SINGLE, "00100020": UNIVERSAL, "00404005": RANGE, "00404011": SINGLE,
        "00404025": SEQUENCE, "00404026": UNIVERSAL, "00404027": UNIVERSAL, "00741200": UNIVERSAL,
    }
    by_tag = {c.tag: c for c in q.conditions}
    assert by_tag["00100010"].case_insensitive and not by_tag["00741202"].case_insensitive
    assert by_tag["00404005"].bounds == ("20261123000000.000000", None)
    assert by_tag["00404011"].bounds == ("20261123000000.000000", "20261123235959.999999")
    station = by_tag["00404025"]
    assert [(c.path, c.kind, c.values) for c in station.nested] == [
        (("00404025", "00080100"), SINGLE, ("ST1",)), (("00404025", "00080102"), SINGLE, ("99WFM",))]
    assert {c.tag for c in q.active} == {"00080018", "0020000D", "00741204", "00741202", "00100010",
                                         "00404005", "00404011", "00404025"}
    assert q.ignored == ()


def test_return_keys():
    q = parse_query({
        "00080005": el("CS", "ISO_IR 192"),
        "00080201": el("SH", "+0100"),
        "00081195": el("UI"),
        "00100010": el("PN"),
        "00404025": seq(),
        "00404034": seq({"00404009": seq(), "00404037": el("PN")}),
        "00100021": el("LO", "ISSUER"),  # Issuer of Patient ID: not indexed
        "00091010": el("LO"),  # private
    })
    assert q.return_keys == (
        ReturnKey("00100010", "PN"),
        ReturnKey("00404025", "SQ", None),
        ReturnKey("00404034", "SQ", (ReturnKey("00404009", "SQ", None), ReturnKey("00404037", "PN"))),
        ReturnKey("00100021", "LO"),
        ReturnKey("00091010", "LO"),
    )
    assert q.specific_character_set == ("ISO_IR 192",)
    assert q.timezone_offset == "+0100"
    assert q.ignored == ("00081195", "00100021")
    assert q.active == ()


def test_unsupported_keys_are_ignored_not_matched():
    q = parse_query({
        "00404025": seq({"00080100": el("SH", "ST1"), "00080105": el("CS", "DCMR")}),  # Mapping Resource
        "00100010": el("PN", {"Ideographic": "山田^太郎"}),
    })
    assert q.ignored == ("00404025.00080105", "00100010")
    assert [c.kind for c in q.conditions] == [SEQUENCE, UNIVERSAL]
    assert len(q.conditions[0].active_nested) == 1


def test_dt_range_with_negative_offsets_is_split_on_the_right_dash():
    q = parse_query({"00404005": el("DT", "20261123100000-0500-20261124100000-0500")})
    assert q.conditions[0].bounds == ("20261123100000.000000", "20261124100000.999999")
    q = parse_query({"00404005": el("DT", "-20261124-0500")})
    assert q.conditions[0].bounds == (None, "20261124235959.999999")
    q = parse_query({"00404005": el("DT", "20261123 - 20261124")})
    assert q.conditions[0].bounds == ("20261123000000.000000", "20261124235959.999999")


@pytest.mark.parametrize("identifier, tag", [
    ({"00404005": el("DT", "20261124-20261123")}, "00404005"),  # reversed
    ({"00404005": el("DT", "2026112-")}, "00404005"),
    ({"00404005": el("DT", "-")}, "00404005"),
    ({"00404005": el("DT", "20261123-20261124-20261125")}, "00404005"),
    ({"00100030": el("DA", "19700101-1970")}, "00100030"),
    ({"00100030": el("DA", "1970.01.01-1970.12.31-")}, "00100030"),
    ({"00080018": el("UI", "1.2.3", "1.2.x")}, "00080018"),
    ({"00080018": el("UI", "1.2.3\\01.2")}, "00080018"),
    ({"00100020": el("LO", "P1", "P2")}, "00100020"),
    ({"00404025": seq(code("A"), code("B"))}, "00404025"),
    ({"00404025": el("SQ", "ST1")}, "00404025"),
    ({"00100020": el("SQ", {})}, "00100020"),
    ({"0040A370": seq({"00080051": seq({"00400031": el("UT", "A")}, {"00400031": el("UT", "B")})})},
     "0040A370"),
])
def test_invalid_keys_are_rejected_with_a900(identifier, tag):
    with pytest.raises(QueryRejected) as info:
        parse_query(identifier)
    assert info.value.status.code == 0xA900
    assert info.value.tags[0] == tag
    assert 0 < len(info.value.comment) <= 64


def test_rejects_non_tags():
    with pytest.raises(QueryRejected):
        parse_query({"PatientName": pn("X")})


def test_wildcard_patterns_escape_sql_wildcards():
    assert like_pattern("MR_a%b!c*?") == "MR!_a!%b!!c%_"
    assert glob_pattern("a[b]*?") == "a[[]b]*?"


@pytest.mark.parametrize("value, bounds", [
    ("SMITH^J*", ("smith^j", "smith^k")),
    ("MÜLLER?", ("mÜller", "mÜlles")),  # SQLite's lower() folds ASCII letters only: Ü stays
    ("ÜZ*", ("Üz", "Ü{")),  # folded before the last character is stepped: "Z" is "z", then "{"
    ("AB?C*", ("ab", "ac")),
    ("*SMITH", (None, None)),
    ("\ud7ff*", ("\ud7ff", "\ue000")),  # the surrogates are no characters: skipped
    ("a\U0010ffff*", ("a\U0010ffff", None)),  # nothing above the last code point
])
def test_a_folded_prefix_bounds_what_the_wild_card_can_match(value, bounds):
    assert folded_prefix_range(value) == bounds


# ---------------------------------------------------------------------------------------------------
# index_workitem

PUSH = UPS_PUSH_SOP_CLASS_UID


def workitem(uid, *, state="SCHEDULED", start=None, stations=(), performers=(), requests=(), **extra):
    ds = {"00080016": el("UI", PUSH), "00080018": el("UI", uid), "00741000": el("CS", state)}
    if start:
        ds["00404005"] = el("DT", start)
    if stations:
        ds["00404025"] = seq(*stations)
    if performers:
        ds["00404034"] = seq(*performers)
    if requests:
        ds["0040A370"] = seq(*requests)
    ds.update(extra)
    return ds


def test_index_workitem_columns_and_rows():
    ds = workitem(
        "1.2.3", start="20261123103015.5+0100",
        stations=[code("ST1", meaning="Station 1"), code("ST2", "OTHER")],
        performers=[performer([code("DR1", "L"), code("DR9", "X")], "House^Gregory", "PPTH")],
        requests=[request("ACC1", issuer="HOSP", rp_id="RP1")],
        **{"00100010": el("PN", {"Alphabetic": "Doe^John ", "Ideographic": "ド^ジョン"}),
           "00100030": el("DA", "19700101"), "00741200": el("CS", "HIGH"),
           "00741216": seq({"00404035": seq(performer([code("DR7", "L")], "Chase^Robert"))})})
    columns, rows = index_workitem(ds)
    assert columns["scheduled_start_datetime"] == "20261123103015.500000"
    assert columns["patient_name"] == "Doe^John"
    assert columns["patient_birth_date"] == "19700101"
    assert columns["priority"] == "HIGH"
    assert columns["procedure_step_state"] == "SCHEDULED"
    assert columns["worklist_label"] is None
    assert "sop_instance_uid" not in columns
    assert set(columns) == {c.name for c in Workitem.__table__.columns} - {
        "sop_instance_uid", "transaction_uid", "dataset_json", "created_at", "updated_at", "finished_at"}
    got = {(r["sequence_tag"], r["item_index"], r["key"], r["value_index"], r["value"]) for r in rows}
    assert got == {
        ("00404025", 0, "00080100", 0, "ST1"), ("00404025", 0, "00080102", 0, "99WFM"),
        ("00404025", 0, "00080104", 0, "Station 1"),
        ("00404025", 1, "00080100", 0, "ST2"), ("00404025", 1, "00080102", 0, "OTHER"),
        ("00404034", 0, "00404009.00080100", 0, "DR1"), ("00404034", 0, "00404009.00080102", 0, "L"),
        ("00404034", 0, "00404009.00080100", 1, "DR9"), ("00404034", 0, "00404009.00080102", 1, "X"),
        ("00404034", 0, "00404037", 0, "House^Gregory"), ("00404034", 0, "00404036", 0, "PPTH"),
        ("0040A370", 0, "00080050", 0, "ACC1"), ("0040A370", 0, "00080051.00400031", 0, "HOSP"),
        ("0040A370", 0, "00401001", 0, "RP1"),
        ("00404035", 0, "00404009.00080100", 0, "DR7"), ("00404035", 0, "00404009.00080102", 0, "L"),
        ("00404035", 0, "00404037", 0, "Chase^Robert"),
    }
    assert all(set(r) == {"sequence_tag", "item_index", "key", "value_index", "value"} for r in rows)


# An update writes only the columns whose element changed, and the sequence rows only when a matchable
# sequence changed: what it stores must equal indexing the new data set whole.
_ELEMENT_CHOICES = {
    "00741000": st.sampled_from([el("CS", "SCHEDULED"), el("CS", "IN PROGRESS"), el("CS", "COMPLETED")]),
    "00741200": st.sampled_from([el("CS", "HIGH"), el("CS", "LOW"), el("CS")]),
    "00404005": st.sampled_from([el("DT", "20261123103015.5+0100"), el("DT", "20261124")]),
    "00100010": st.sampled_from([pn("Doe^John "), pn("Roe^Jane"), el("PN")]),
    "00404025": st.sampled_from([seq(code("ST1")), seq(code("ST1"), code("ST2", "OTHER")), seq()]),
    "00741216": st.sampled_from([seq({"00404035": seq(performer([code("DR7", "L")], "Chase^Robert"))}), seq()]),
    "00404041": st.sampled_from([el("CS", "READY"), el("CS", "INCOMPLETE")]),
}
_WORKITEM_ELEMENTS = st.fixed_dictionaries({}, optional=_ELEMENT_CHOICES)


@settings(max_examples=300, deadline=None)
@given(before=_WORKITEM_ELEMENTS, after=_WORKITEM_ELEMENTS)
def test_an_update_indexes_what_a_full_index_would(before, after):
    before, after = workitem("1.2.3") | before, workitem("1.2.3") | after
    stored_columns, stored_rows = index_workitem(before)
    full_columns, full_rows = index_workitem(after)
    assert stored_columns | changed_columns(before, after) == full_columns
    if full_rows != stored_rows:
        assert sequences_changed(before, after)


def test_index_workitem_rejects_a_malformed_date():
    with pytest.raises(ValueError):
        index_workitem(workitem("1.2.3", start="2026-11-23"))


# ---------------------------------------------------------------------------------------------------
# SQL on both backends

W1, W2, W3, W4, W5, W6 = (f"2.25.{n}" for n in range(1, 7))
STUDY1, STUDY3 = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.3"
REPLACED = "1.2.826.0.1.3680043.10.9.9"

WORKITEMS = [
    workitem(
        W1, start="20261123080000", stations=[code("ST1"), code("ST2")],
        performers=[performer([code("DR1", "L")], "House^Gregory", "PPTH"),
                    performer([code("DR2", "L")], "Wilson^James", "PPTH")],
        requests=[request("ACC1", study=STUDY1, issuer="HOSP", rp_id="RP1", service="RAD",
                          description="CT Head")],
        **{"00741204": el("LO", "CT head"), "00741202": el("LO", "CT"), "00741200": el("CS", "HIGH"),
           "00404041": el("CS", "READY"), "0020000D": el("UI", STUDY1), "00100010": pn("Doe^John"),
           "00100020": el("LO", "P1"), "00100030": el("DA", "19700101"), "00100040": el("CS", "M"),
           "00380010": el("LO", "A1"), "00380014": seq({"00400031": el("UT", "ADT")}),
           "00404026": seq(code("CLS1", "DCM")), "00404027": seq(code("BLDG1")),
           "00404018": seq(code("110005", "DCM", "Interpretation")),
           "00404011": el("DT", "20261123090000"), "00404010": el("DT", "20261101120000"),
           "00404008": el("DT", "20261201")}),
    workitem(
        W2, start="20261123235959.5", stations=[code("ST3"), code("ST1", "OTHER")],
        **{"00741204": el("LO", "MR_knee"), "00741202": el("LO", "MR"), "00741200": el("CS", "MEDIUM"),
           "00404041": el("CS", "INCOMPLETE"), "00100010": pn("doe^jane"), "00100020": el("LO", "P2"),
           "00100030": el("DA", "19851231"), "00100040": el("CS", "F")}),
    workitem(
        W3, start="20261124000000", stations=[code("ST9")],
        performers=[performer([code("DR3", "L"), code("DR4", "X")], "Cuddy^Lisa"),
                    performer([code("DR2", "L")])],
        requests=[request("ACC2", study=STUDY3, rp_id="RP2", service="CARDIO"),
                  request("ACC3", issuer="CLINIC")],
        **{"00741204": el("LO", "MR%knee"), "00741202": el("LO", "MR"), "00741200": el("CS", "LOW"),
           "00404041": el("CS", "READY"), "0020000D": el("UI", STUDY3), "00100010": pn("DOE^JOHN"),
           "00100020": el("LO", "P1"), "00741224": seq({"00081150": el("UI", PUSH),
                                                         "00081155": el("UI", REPLACED)})}),
    workitem(
        W4, state="IN PROGRESS", start="20261125100000.123456",
        stations=[code("ST1", "OTHER"), code("ST5")],
        **{"00741204": el("LO", "MRxknee"), "00741202": el("LO", "MR"), "00741200": el("CS", "HIGH"),
           "00404041": el("CS", "READY"), "00100010": pn("Smith^Anna"),
           "00741216": seq({"00404035": seq(performer([code("DR9", "L")], "Chase^Robert"))})}),
    workitem(W5, start="20261120120000"),  # nothing else: every other key is zero length
    workitem(
        W6, state="COMPLETED", start="20261126", stations=[code("STX"), code("ST7")],
        **{"00741204": el("LO", "mr knee"), "00741202": el("LO", "CT"), "00100010": pn("Müller^Jörg")}),
]
ALL = [W5, W1, W2, W3, W4, W6]  # in scheduled start order


@pytest.fixture(scope="module")
def engine(database_url):
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for ds in WORKITEMS:
            uid = ds["00080018"]["Value"][0]
            columns, rows = index_workitem(ds)
            conn.execute(insert(Workitem.__table__).values(
                sop_instance_uid=uid, dataset_json=json.dumps(ds), created_at=now, updated_at=now, **columns))
            if rows:
                conn.execute(insert(WorkitemSeqItem.__table__), [dict(r, workitem_uid=uid) for r in rows])
    yield engine
    engine.dispose()


def find(engine, identifier, **kw):
    with Session(engine) as session:
        return [w.sop_instance_uid for w in session.scalars(matching_select(parse_query(identifier), **kw))]


CASES = [
    # universal matching
    ({}, ALL),
    ({"00100010": el("PN"), "00404025": seq(), "00741204": el("LO"), "00404005": el("DT"),
      "0040A370": seq({"00080050": el("SH")}), "00741200": el("CS", "*")}, ALL),
    # single value
    ({"00741000": el("CS", "SCHEDULED")}, [W5, W1, W2, W3]),
    ({"00741000": el("CS", "IN PROGRESS")}, [W4]),
    ({"00741200": el("CS", "HIGH")}, [W1, W4]),
    ({"00741200": el("CS", "high")}, []),  # case-sensitive
    ({"00741202": el("LO", "MR")}, [W2, W3, W4]),
    ({"00741204": el("LO", "MR_knee")}, [W2]),
    ({"00404041": el("CS", "READY")}, [W1, W3, W4]),
    ({"00100020": el("LO", "P1")}, [W1, W3]),
    ({"00100040": el("CS", "F")}, [W2]),
    ({"00380010": el("LO", "A1")}, [W1]),
    ({"0020000D": el("UI", STUDY3)}, [W3]),
    ({"00100030": el("DA", "19700101")}, [W1]),
    # PN: case-insensitive (ASCII on both backends)
    ({"00100010": pn("doe^john")}, [W1, W3]),
    ({"00100010": pn("DOE^JANE")}, [W2]),
    ({"00100010": pn("Doe")}, []),
    ({"00100010": pn("Müller^Jörg")}, [W6]),
    # wild card; a literal % or _ in the data is not a wild card
    ({"00741204": el("LO", "MR?knee")}, [W2, W3, W4]),
    ({"00741204": el("LO", "MR%*")}, [W3]),
    ({"00741204": el("LO", "MR_*")}, [W2]),
    ({"00741204": el("LO", "*knee")}, [W2, W3, W4, W6]),
    ({"00741204": el("LO", "mr*")}, [W6]),  # case-sensitive for LO
    ({"00741204": el("LO", "M*R")}, []),
    ({"00741204": el("LO", "??_knee")}, [W2]),  # "_" is literal: not MR%knee nor MRxknee
    ({"00100010": pn("DOE^J*")}, [W1, W2, W3]),
    ({"00100010": pn("*^j?hn")}, [W1, W3]),
    ({"00741200": el("CS", "?IGH")}, [W1, W4]),
    # list of UIDs
    ({"00080018": el("UI", W2, W4, "2.25.999")}, [W2, W4]),
    ({"00080018": el("UI", W3)}, [W3]),
    ({"00080018": el("UI", f"{W1}\\{W6}")}, [W1, W6]),
    ({"00080016": el("UI", PUSH)}, ALL),
    ({"00080016": el("UI", "1.2.840.10008.5.1.4.34.6.2")}, []),
    # ranges on Scheduled Procedure Step Start DateTime
    ({"00404005": el("DT", "20261123-20261123")}, [W1, W2]),  # DA-only bounds: the whole day
    ({"00404005": el("DT", "20261123")}, [W1, W2]),  # single value = the same range
    ({"00404005": el("DT", "20261123080000")}, [W1]),
    ({"00404005": el("DT", "20261123080000+0100")}, [W1]),  # offset dropped, not converted
    ({"00404005": el("DT", "-20261123")}, [W5, W1, W2]),
    ({"00404005": el("DT", "20261124-")}, [W3, W4, W6]),
    ({"00404005": el("DT", "20261123235959.5-20261125100000.123456")}, [W2, W3, W4]),
    ({"00404005": el("DT", "20261123235959.6-")}, [W3, W4, W6]),
    ({"00404005": el("DT", "-20261123235959.4")}, [W5, W1]),
    ({"00404005": el("DT", "-20261123235959.5")}, [W5, W1, W2]),
    ({"00404005": el("DT", "20261125100000.123457-")}, [W6]),
    ({"00404005": el("DT", "2026112523-202611260000")}, [W6]),
    ({"00404005": el("DT", "2026-")}, ALL),
    ({"00404005": el("DT", "2027-")}, []),
    ({"00404011": el("DT", "20261123-")}, [W1]),
    ({"00404010": el("DT", "-202611")}, [W1]),
    ({"00404008": el("DT", "20261201")}, [W1]),
    ({"00100030": el("DA", "19800101-")}, [W2]),
    ({"00100030": el("DA", "1970.01.01-1985.12.30")}, [W1]),
    # sequence matching, all items
    ({"00404025": seq(code("ST1"))}, [W1]),
    ({"00404025": seq({"00080100": el("SH", "ST1")})}, [W1, W2, W4]),
    ({"00404025": seq({"00080100": el("SH", "ST7")})}, [W6]),  # only the SECOND item matches
    ({"00404025": seq(code("ST1", "OTHER"))}, [W2, W4]),  # second item of W2, first of W4
    ({"00404025": seq({"00080100": el("SH", "ST5"), "00080102": el("SH", "OTHER")})}, []),  # same item
    ({"00404025": seq({"00080100": el("SH", "ST1"), "00080102": el("SH", "99WFM")})}, [W1]),
    ({"00404025": seq({"00080100": el("SH", "ST?")})}, [W1, W2, W3, W4, W6]),
    ({"00404025": seq({"00080100": el("SH", "ST1"), "00080104": el("LO")})}, [W1, W2, W4]),
    ({"00404025": seq({})}, ALL),
    ({"00404026": seq(code("CLS1", "DCM"))}, [W1]),
    ({"00404027": seq({"00080100": el("SH", "BLDG*")})}, [W1]),
    ({"00404018": seq({"00080100": el("SH", "110005"), "00080104": el("LO", "Interpretation")})}, [W1]),
    # nested Human Performer Code Sequence, same performer item and same code item
    ({"00404034": seq(performer([code("DR2", "L")]))}, [W1, W3]),
    ({"00404034": seq(performer([code("DR1", "L")], "Wilson*"))}, []),  # two performers of W1
    ({"00404034": seq(performer([code("DR2", "L")], "wilson^james"))}, [W1]),
    ({"00404034": seq(performer([code("DR3", "X")]))}, []),  # DR3 and X in different code items
    ({"00404034": seq(performer([code("DR4", "X")], "Cuddy^Lisa"))}, [W3]),
    ({"00404034": seq(performer([{"00080100": el("SH", "DR*")}], org="PPTH"))}, [W1]),
    ({"00404034": seq(performer(name="*"))}, ALL),
    # Actual Human Performers, inside UPS Performed Procedure Sequence
    ({"00741216": seq({"00404035": seq(performer([code("DR9", "L")]))})}, [W4]),
    ({"00741216": seq({"00404035": seq(performer(name="chase*"))})}, [W4]),
    ({"00741216": seq({"00404035": seq(performer(name="House*"))})}, []),
    ({"00741216": seq({"00404035": seq()})}, ALL),
    # Referenced Request Sequence
    ({"0040A370": seq({"00080050": el("SH", "ACC2")})}, [W3]),
    ({"0040A370": seq({"00080050": el("SH", "ACC3")})}, [W3]),  # second request item
    ({"0040A370": seq({"00080050": el("SH", "ACC*")})}, [W1, W3]),
    ({"0040A370": seq({"00080050": el("SH", "ACC2"), "00080051": seq({"00400031": el("UT", "CLINIC")})})},
     []),  # accession and issuer of different requests
    ({"0040A370": seq({"00080050": el("SH", "ACC3"), "00080051": seq({"00400031": el("UT", "CLINIC")})})},
     [W3]),
    ({"0040A370": seq({"0020000D": el("UI", STUDY1, STUDY3)})}, [W1, W3]),
    ({"0040A370": seq({"00401001": el("SH", "RP1"), "00321033": el("LO", "RAD"),
                       "00321060": el("LO", "CT*")})}, [W1]),
    ({"0040A370": seq({"00321033": el("LO", "RAD"), "00401001": el("SH", "RP2")})}, []),
    ({"00741224": seq({"00081155": el("UI", REPLACED)})}, [W3]),
    ({"00380014": seq({"00400031": el("UT", "ADT")})}, [W1]),
    # unsupported keys are ignored
    ({"00100021": el("LO", "NOBODY"), "00741202": el("LO", "CT")}, [W1, W6]),
    ({"00404025": seq({"00080100": el("SH", "ST7"), "00080105": el("CS", "NONE")})}, [W6]),
    # several keys: AND
    ({"00741000": el("CS", "SCHEDULED"), "00741202": el("LO", "MR")}, [W2, W3]),
    ({"00741202": el("LO", "MR"), "00404025": seq({"00080100": el("SH", "ST1")})}, [W2, W4]),
    ({"00741202": el("LO", "MR"), "00404025": seq({"00080100": el("SH", "ST1")}),
      "00404005": el("DT", "-20261124")}, [W2]),
    ({"00100010": pn("doe*"), "00404041": el("CS", "READY"), "00741200": el("CS", "LOW"),
      "0040A370": seq({"00080050": el("SH", "ACC?")})}, [W3]),
    ({"00100010": pn("doe*"), "00404034": seq(performer([code("DR2", "L")])),
      "00404025": seq(code("ST9"))}, [W3]),
]


@pytest.mark.parametrize("identifier, expected", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matching(engine, identifier, expected):
    assert find(engine, identifier) == expected


def test_limit_and_offset_page_in_a_stable_order(engine):
    assert find(engine, {}, limit=2) == ALL[:2]
    assert find(engine, {}, limit=2, offset=2) == ALL[2:4]
    assert find(engine, {}, limit=10, offset=4) == ALL[4:]


def test_sequence_keys_use_exists_with_one_alias_per_item_key():
    stmt = matching_select(parse_query({"00404034": seq(performer([code("DR2", "L")], "X*"))}))
    sql = str(stmt)
    assert sql.count("EXISTS") == 1
    assert sql.count("workitem_seq_item AS") == 3
    assert sql.count("value_index") == 2  # the two nested code keys share their code item
    assert any(isinstance(e, WildcardMatch) for e in _walk(stmt.whereclause))


PLANNED = [
    # (what a scheduler asks, the index that serves it on SQLite, and on PostgreSQL)
    ({"00100010": pn("SMITH^A*")}, "ix_workitem_patient_name_folded", "ix_workitem_patient_name_folded"),
    ({"00100010": pn("Smith^Anna")}, "ix_workitem_patient_name_folded", "ix_workitem_patient_name_folded"),
    # SQLite uses an index for GLOB on a bare column; PostgreSQL one with text_pattern_ops for LIKE
    ({"00741204": el("LO", "CT*")}, "ix_workitem_procedure_step_label", "ix_workitem_procedure_step_label"),
    ({"00741204": el("LO", "CT 1")}, "ix_workitem_procedure_step_label", "ix_workitem_procedure_step_label"),
    ({"00100020": el("LO", "MRN12*")}, "ix_workitem_patient_id", "ix_workitem_patient_id"),
    ({"00100020": el("LO", "MRN123")}, "ix_workitem_patient_id", "ix_workitem_patient_id"),
]


@pytest.mark.parametrize("identifier, on_sqlite, on_postgresql", PLANNED,
                         ids=["pn prefix", "pn", "lo prefix", "lo", "patient id prefix", "patient id"])
def test_names_and_prefixes_are_matched_on_an_index(engine, identifier, on_sqlite, on_postgresql):
    """Not a scan of every workitem: at a million workitems that took over a second."""
    plan = query_plan(engine, matching_select(parse_query(identifier)))
    used = (f"USING INDEX {on_sqlite} (" if engine.dialect.name == "sqlite"
            else f"using {on_postgresql} on workitem")
    assert used in plan, plan


def _walk(clause):
    from sqlalchemy.sql.visitors import iterate
    return list(iterate(clause))


# ---------------------------------------------------------------------------------------------------
# Property: the SQL agrees with a direct reading of C.2.2.2 on awkward text, on both backends

ALPHABET = "aAbBzZ{%_!*?[]^ "
PATTERNS = st.text(alphabet=ALPHABET, min_size=1, max_size=5).map(str.strip).filter(bool)
PROPERTY_DATA = [
    # (uid, label (LO), patient name (PN), station code items)
    ("2.25.101", "a%b", "Ab^ba", [("a_", "X"), ("b", "Y")]),
    ("2.25.102", "A_b", "ab^BA", [("b", "X")]),
    ("2.25.103", "ab!", "a[b]", [("a%", "Y"), ("a_", "Y")]),
    ("2.25.104", "[ab]", "%^_", [("a", "X")]),
    ("2.25.105", "aab", "A!B", []),
    ("2.25.106", "a b", "a*b", [("ab", "X"), ("AB", "Y")]),
    ("2.25.107", "Z{", "Zz^{a", [("z", "X")]),  # about the range a folded prefix gives: "Z" is "z" < "{"
]


def _reference(pattern: str, value: str | None, case_insensitive: bool) -> bool:
    if set(pattern) == {"*"}:  # universal
        return True
    if value is None:
        return False
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    if "*" in pattern or "?" in pattern:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(regex, value, re.DOTALL) is not None
    return pattern == value


@pytest.fixture
def property_engine(engine):
    """Extra workitems (scheduled in 2030) for the property test only, removed afterwards."""
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for uid, label, name, codes in PROPERTY_DATA:
            ds = workitem(uid, start="20300101", stations=[code(v, s) for v, s in codes],
                          **{"00741204": el("LO", label), "00100010": pn(name)})
            columns, rows = index_workitem(ds)
            conn.execute(insert(Workitem.__table__).values(
                sop_instance_uid=uid, dataset_json="{}", created_at=now, updated_at=now, **columns))
            if rows:
                conn.execute(insert(WorkitemSeqItem.__table__), [dict(r, workitem_uid=uid) for r in rows])
    yield engine
    uids = [row[0] for row in PROPERTY_DATA]
    items, workitems = WorkitemSeqItem.__table__, Workitem.__table__
    with engine.begin() as conn:
        conn.execute(delete(items).where(items.c.workitem_uid.in_(uids)))
        conn.execute(delete(workitems).where(workitems.c.sop_instance_uid.in_(uids)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.none() | PATTERNS, name=st.none() | PATTERNS, code_value=st.none() | PATTERNS,
       scheme=st.none() | st.sampled_from(["X", "Y", "?"]))
def test_sql_agrees_with_the_rules(property_engine, label, name, code_value, scheme):
    identifier = {"00404005": el("DT", "2030")}
    if label is not None:
        identifier["00741204"] = el("LO", label)
    if name is not None:
        identifier["00100010"] = pn(name)
    item = {}
    if code_value is not None:
        item["00080100"] = el("SH", code_value)
    if scheme is not None:
        item["00080102"] = el("SH", scheme)
    if item:
        identifier["00404025"] = seq(item)
    expected = []
    for uid, stored_label, stored_name, codes in PROPERTY_DATA:
        if label is not None and not _reference(label, stored_label, False):
            continue
        if name is not None and not _reference(name, stored_name, True):
            continue
        universal_item = all(p is None or set(p) == {"*"} for p in (code_value, scheme))
        if not universal_item and not any((code_value is None or _reference(code_value, v, False))
                                          and (scheme is None or _reference(scheme, s, False))
                                          for v, s in codes):
            continue
        expected.append(uid)
    assert find(property_engine, identifier) == sorted(expected)


PREFIXED = st.builds(lambda head, tail: head + tail, st.text(alphabet="aAbBzZ{[^ ", min_size=1, max_size=3),
                     st.sampled_from(["*", "?", "*a", "?*", "b*", ""])).map(str.strip).filter(bool)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=PREFIXED)
def test_a_name_with_a_literal_prefix_finds_what_the_rules_find(property_engine, name):
    """On SQLite the folded prefix's range is added to the match: it must never drop one."""
    expected = [uid for uid, _, stored, _ in PROPERTY_DATA if _reference(name, stored, True)]
    assert find(property_engine, {"00404005": el("DT", "2030"), "00100010": pn(name)}) == sorted(expected)
