"""What the HTTP face accepts as DICOM JSON (PS3.18 F.2, PS3.5), against a real server: a payload the DICOM
face could not encode again is refused with 400 naming the fault, on every route that reads one (UPS-RS
Create, Update, Change State; /api/ian, /api/mpps, /api/mpps/{uid}), and nothing of it is stored; a body
that is not JSON (NaN, oversized integers, deep nesting) is 400, never 500; valid payloads of every VR
family still pass and stay readable over DIMSE. Also the Search, Create and Subscribe parameter fixes.
The rules one by one: the unit tests at the end (workflow.kernel.dicom_json_check)."""

from __future__ import annotations

import copy
import json
import time
from urllib.parse import quote

import pytest
from pydicom.uid import generate_uid

from testkit.http import client
from testkit.ian import instance_item, make_ian
from testkit.mpps import completed, in_progress
from testkit.ups import get, ups_association, workitem
from testkit.upsrs import as_json, warning_of
from workflow.overview.study import study_report

pytestmark = pytest.mark.slow

BASE = "/dicom-web/workitems"
STATE, TXN, LABEL = "00741000", "00081195", "00741204"
GLOBAL, FILTERED = "1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"
INF = "__RAW_1e999__"  # written into the body as the literal 1e999 (Python's json reads it as inf)


@pytest.fixture(scope="module")
def http(app):
    with client(app) as http:
        yield http


def text(payload) -> str:
    return json.dumps(payload).replace(f'"{INF}"', "1e999")


def nested(depth: int) -> dict:
    ds: dict = {}
    item = ds
    for _ in range(depth):
        item["00400275"] = {"vr": "SQ", "Value": [{}]}
        item = item["00400275"]["Value"][0]
    return ds


# (id, elements merged into a valid payload, what the Warning must say)
BAD = [
    ("unknown VR", {"00100020": {"vr": "XX", "Value": ["a"]}}, "00100020: 'XX' is not a value representation"),
    ("lower case VR", {"00100020": {"vr": "lo", "Value": ["a"]}}, "00100020: 'lo' is not a value representation"),
    ("VR not the attribute's", {"00100020": {"vr": "SQ", "Value": []}}, "00100020: VR SQ is not the attribute's"),
    ("PN group a number", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": 5}]}},
     "00100010: the PN Alphabetic group is a string"),
    ("PN group an array", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": ["a"]}]}},
     "00100010: the PN Alphabetic group is a string"),
    ("PN group an object", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": {"x": 1}}]}},
     "00100010: the PN Alphabetic group is a string"),
    ("PN unknown group", {"00100010": {"vr": "PN", "Value": [{"Latin": "a"}]}},
     "00100010: 'Latin' is not a PN component group"),
    ("DS 1e999", {"00101020": {"vr": "DS", "Value": [INF]}}, "00101020: inf is not a finite number (DS)"),
    ("DS 'NaN'", {"00101020": {"vr": "DS", "Value": ["NaN"]}}, "00101020: 'NaN' is not a decimal string"),
    ("IS fraction", {"00200013": {"vr": "IS", "Value": [1.5]}}, "00200013: 1.5 is not a whole number"),
    ("LO too long", {"00100020": {"vr": "LO", "Value": ["x" * 100_000]}},
     "00100020: LO values are at most 64 characters, not 100000"),
    ("LO with NUL", {"00100020": {"vr": "LO", "Value": ["a\u0000b"]}}, "00100020: LO value with a NUL character"),
    ("PN with NUL", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe\u0000"}]}},
     "00100010: PN value with a NUL character"),
    ("InlineBinary on LO", {"00100020": {"vr": "LO", "InlineBinary": "AAAA"}},
     "00100020: InlineBinary is for the binary VRs"),
    ("BulkDataURI", {"00100020": {"vr": "LO", "BulkDataURI": "http://x/1"}},
     "00100020: BulkDataURI is not accepted (this server does not fetch bulk data"),
    ("Value and InlineBinary", {"7FE00010": {"vr": "OB", "Value": ["AA"], "InlineBinary": "AAAA"}},
     "7FE00010: an element has either 'Value' or 'InlineBinary', not both"),
    ("binary with a Value", {"7FE00010": {"vr": "OW", "Value": [1]}}, "7FE00010: OW elements have no 'Value'"),
    ("InlineBinary not base64", {"7FE00010": {"vr": "OB", "InlineBinary": "A*A="}},
     "7FE00010: InlineBinary is not valid base64"),
    ("command tag", {"00000000": {"vr": "UL", "Value": [4]}}, "00000000: a command element (group 0000)"),
    ("command UID", {"00001000": {"vr": "UI", "Value": ["1.2.3"]}}, "00001000: a command element (group 0000)"),
    ("file meta tag", {"00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2"]}},
     "00020010: a file meta element (group 0002)"),
    ("item tag", {"FFFEE000": {"vr": "OB"}}, "FFFEE000: an item or delimiter tag (group FFFE)"),
    ("US -1", {"00280010": {"vr": "US", "Value": [-1]}}, "00280010: -1 is out of the range of US"),
    ("US 10**20", {"00280010": {"vr": "US", "Value": [10 ** 20]}},
     "00280010: 100000000000000000000 is out of the range of US"),
    ("US a string", {"00280010": {"vr": "US", "Value": ["1"]}}, "00280010: US values are integers"),
    ("AT zz", {"00209165": {"vr": "AT", "Value": ["zz"]}}, "00209165: AT values are tags of 8 hexadecimal"),
    ("UI a number", {"0020000D": {"vr": "UI", "Value": [123]}}, "0020000D: UI values are strings, not 123"),
    ("in an item", {"00400275": {"vr": "SQ", "Value": [{"00321060": {"vr": "LO", "Value": [7]}}]}},
     "00400275[0].00321060: LO values are strings, not 7"),
    ("item not an object", {"00400275": {"vr": "SQ", "Value": ["x"]}}, "00400275[0]: not a DICOM JSON data set"),
    ("too deep", nested(40), "sequences nested more than 32 deep"),
    ("tag in two cases", {"0010002a": {"vr": "LO"}, "0010002A": {"vr": "LO"}}, "0010002A: given twice"),
]
BAD_IDS = [case[0] for case in BAD]


# ------------------------------------------------------------------ the routes, each with its "nothing stored"

@pytest.fixture(scope="module")
def scheduled(rs):
    """A SCHEDULED workitem that Update and Change State try to change with bad payloads."""
    response = rs.create(workitem(ProcedureStepLabel="untouched"))
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def step(http):
    """An IN PROGRESS performed procedure step that /api/mpps/{uid} tries to complete with bad payloads."""
    uid, study = generate_uid(), generate_uid()
    body = in_progress(study).to_json_dict()
    body["00080018"] = {"vr": "UI", "Value": [uid]}
    assert http.post("/api/mpps", json=body).status_code == 201
    return uid, study


def first(ds: dict, tag: str):
    return (ds.get(tag, {}).get("Value") or [None])[0]


def send_create(app, rs, http, bad: dict):
    uid = generate_uid()
    payload = as_json(workitem()) | bad
    response = rs.http.post(BASE, params={"workitem": uid}, content=text(payload),
                            headers={"Content-Type": "application/dicom+json"})
    return response, lambda: rs.retrieve(uid).status_code == 404


def send_update(app, rs, http, bad: dict, scheduled: str):
    payload = {LABEL: {"vr": "LO", "Value": ["changed"]}} | bad
    response = rs.http.post(f"{BASE}/{scheduled}", content=text(payload),
                            headers={"Content-Type": "application/dicom+json"})
    return response, lambda: first(rs.retrieve(scheduled).json()[0], LABEL) == "untouched"


def send_change_state(app, rs, http, bad: dict, scheduled: str):
    payload = {STATE: {"vr": "CS", "Value": ["IN PROGRESS"]}, TXN: {"vr": "UI", "Value": [generate_uid()]}} | bad
    response = rs.http.put(f"{BASE}/{scheduled}/state", content=text(payload),
                           headers={"Content-Type": "application/dicom+json"})
    return response, lambda: first(rs.retrieve(scheduled).json()[0], STATE) == "SCHEDULED"


def send_ian(app, rs, http, bad: dict):
    ian = make_ian()
    payload = ian.to_json_dict() | {"00080018": {"vr": "UI", "Value": [generate_uid()]}} | bad
    response = http.post("/api/ian", content=text(payload), headers={"Content-Type": "application/json"})
    return response, lambda: study_report(app.engine, ian.StudyInstanceUID) is None


def send_mpps_create(app, rs, http, bad: dict):
    uid = generate_uid()
    valid = in_progress(generate_uid()).to_json_dict() | {"00080018": {"vr": "UI", "Value": [uid]}}
    response = http.post("/api/mpps", content=text(valid | bad), headers={"Content-Type": "application/json"})
    # Not stored: the same UID is still free (a second N-CREATE of a stored step is 0111, 409).
    return response, lambda: http.post("/api/mpps", json=valid).status_code == 201


def send_mpps_update(app, rs, http, bad: dict, step: tuple[str, str]):
    uid, study = step
    payload = completed({generate_uid(): [generate_uid()]}).to_json_dict() | bad
    response = http.post(f"/api/mpps/{uid}", content=text(payload), headers={"Content-Type": "application/json"})
    return response, lambda: [s["status"] for s in study_report(app.engine, study)["performed_steps"]] == [
        "IN PROGRESS"]


ROUTES = {"create": send_create, "update": send_update, "change state": send_change_state,
          "ian": send_ian, "mpps create": send_mpps_create, "mpps update": send_mpps_update}


def send(route: str, request, app, rs, http, bad: dict):
    extra = ()
    if route in ("update", "change state"):
        extra = (request.getfixturevalue("scheduled"),)
    elif route == "mpps update":
        extra = (request.getfixturevalue("step"),)
    return ROUTES[route](app, rs, http, copy.deepcopy(bad), *extra)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("bad, says", [case[1:] for case in BAD], ids=BAD_IDS)
def test_a_payload_that_is_not_valid_dicom_json_is_refused_and_nothing_is_stored(request, app, rs, http, route,
                                                                                  bad, says):
    response, nothing_stored = send(route, request, app, rs, http, bad)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert says in warning_of(response), warning_of(response)
    assert nothing_stored()


BODY_ROUTES = {
    "create": ("POST", BASE), "update": ("POST", f"{BASE}/{{uid}}"), "change state": ("PUT", f"{BASE}/{{uid}}/state"),
    "cancel request": ("POST", f"{BASE}/{{uid}}/cancelrequest"), "ian": ("POST", "/api/ian"),
    "mpps create": ("POST", "/api/mpps"), "mpps update": ("POST", "/api/mpps/{uid}"),
}
NOT_JSON = {
    "NaN": '{"00101020": {"vr": "DS", "Value": [NaN]}}',
    "Infinity": '{"00101020": {"vr": "DS", "Value": [Infinity]}}',
    "-Infinity": '{"00189089": {"vr": "FD", "Value": [-Infinity]}}',
    "5000 digits": '{"00280010": {"vr": "US", "Value": [' + "9" * 5000 + "]}}",
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("route", list(BODY_ROUTES))
@pytest.mark.parametrize("body", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_a_body_that_is_not_json_is_400_on_every_route(http, scheduled, step, route, body):
    method, path = BODY_ROUTES[route]
    uid = step[0] if route.startswith("mpps") else scheduled
    response = http.request(method, path.format(uid=uid), content=body,
                            headers={"Content-Type": "application/dicom+json"})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert "the body is not JSON" in warning_of(response)


OTHER_MEDIA = {"text/plain": "unsupported media type text/plain",
               "application/x-www-form-urlencoded": "unsupported media type application/x-www-form-urlencoded",
               "application/dicom+xml": "DICOM XML payloads are not supported",
               'multipart/related; type="application/dicom+json"': "unsupported media type multipart/related"}


@pytest.mark.parametrize("route", list(BODY_ROUTES))
@pytest.mark.parametrize("media_type", list(OTHER_MEDIA))
def test_a_payload_declared_as_another_media_type_is_415_on_every_route(http, scheduled, step, route, media_type):
    method, path = BODY_ROUTES[route]
    uid = step[0] if route.startswith("mpps") else scheduled
    response = http.request(method, path.format(uid=uid), content=json.dumps({LABEL: {"vr": "LO", "Value": ["x"]}}),
                            headers={"Content-Type": media_type})
    assert response.status_code == 415, (response.status_code, response.text[:300])
    assert OTHER_MEDIA[media_type] in warning_of(response)


def test_a_payload_refused_for_its_media_type_is_not_stored_and_json_types_are_taken(rs):
    refused = generate_uid()
    response = rs.http.post(BASE, params={"workitem": refused}, content=json.dumps(as_json(workitem())),
                            headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and rs.retrieve(refused).status_code == 404
    for declared in ("application/dicom+json", "application/json; charset=utf-8", "Application/DICOM+JSON", None):
        uid = generate_uid()
        response = rs.http.post(BASE, params={"workitem": uid}, content=json.dumps(as_json(workitem())),
                                headers={"Content-Type": declared} if declared else {})
        assert response.status_code == 201, (declared, response.status_code, warning_of(response))
        assert rs.retrieve(uid).status_code == 200


# ------------------------------------------------------------------ valid payloads still pass

EVERY_VR = {  # a private block (0009,10xx) with one element per VR, and public ones of each family
    "00090010": {"vr": "LO", "Value": ["WFM TEST"]},
    "00091001": {"vr": "AE", "Value": ["STORESCP"]}, "00091002": {"vr": "AS", "Value": ["042Y"]},
    "00091003": {"vr": "AT", "Value": ["00100020", "0040A730"]}, "00091004": {"vr": "CS", "Value": ["A", None]},
    "00091005": {"vr": "DA", "Value": ["20260101"]}, "00091006": {"vr": "DS", "Value": [1.5, "-2.5e3", 7]},
    "00091007": {"vr": "DT", "Value": ["20260101120000.000000+0100"]}, "00091008": {"vr": "FD", "Value": [0.25]},
    "00091009": {"vr": "FL", "Value": [3.5]}, "0009100A": {"vr": "IS", "Value": [42, "-7"]},
    "0009100B": {"vr": "LT", "Value": ["line 1\r\nline 2"]}, "0009100C": {"vr": "OB", "InlineBinary": "AAEC"},
    "0009100D": {"vr": "OD", "InlineBinary": "AAAAAAAA8D8="}, "0009100E": {"vr": "OF", "InlineBinary": "AACAPw=="},
    "0009100F": {"vr": "OL", "InlineBinary": "AQAAAA=="}, "00091010": {"vr": "OV", "InlineBinary": "AQAAAAAAAAA="},
    "00091011": {"vr": "OW", "InlineBinary": "AQA="},
    "00091012": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎",
                                        "Phonetic": "やまだ^たろう"}]},
    "00091013": {"vr": "SH", "Value": ["short"]}, "00091014": {"vr": "SL", "Value": [-2 ** 31]},
    "00091015": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["C1"]}}, {}]},
    "00091016": {"vr": "SS", "Value": [-1]}, "00091017": {"vr": "ST", "Value": ["text"]},
    "00091018": {"vr": "SV", "Value": [-2 ** 63]}, "00091019": {"vr": "TM", "Value": ["120000.123456"]},
    "0009101A": {"vr": "UC", "Value": ["x" * 100]}, "0009101B": {"vr": "UI", "Value": ["1.2.3.4"]},
    "0009101C": {"vr": "UL", "Value": [2 ** 32 - 1]}, "0009101D": {"vr": "UN", "InlineBinary": "AAEC"},
    "0009101E": {"vr": "UR", "Value": ["http://example.com/a"]}, "0009101F": {"vr": "US", "Value": [65535]},
    "00091020": {"vr": "UT", "Value": ["y" * 20_000]}, "00091021": {"vr": "UV", "Value": [2 ** 64 - 1]},
    "00101020": {"vr": "DS", "Value": ["1.80"]}, "00101030": {"vr": "DS", "Value": [70]},
    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},  # UTF-8, for the ideographic and phonetic names
    "00280010": {"vr": "US", "Value": [512]}, "00209165": {"vr": "AT", "Value": ["00100020"]},
}


def test_a_workitem_with_every_vr_family_is_created_and_readable_on_both_faces(app, rs):
    uid = generate_uid()
    payload = as_json(workitem()) | copy.deepcopy(EVERY_VR)
    payload["00100010"] = {"vr": "PN", "Value": ["Doe^Jane"]}  # a plain string: taken as its Alphabetic group
    response = rs.create(payload, uid=uid)
    assert response.status_code == 201, warning_of(response)
    (ds,) = rs.retrieve(uid).json()
    assert ds["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
    for tag in ("00091003", "00091006", "00091012", "00091018", "00091021", "0009100D"):
        assert ds[tag] == EVERY_VR[tag], tag
    with ups_association(app.dicom.port) as assoc:
        status, got = get(assoc, uid)  # the whole workitem, as N-GET encodes it
    assert status.Status == 0x0000 and got is not None
    assert str(got.PatientName) == "Doe^Jane" and got.PatientID == "PID1" and got[0x00091021].value == 2 ** 64 - 1
    assert str(got[0x00091012].value) == "Yamada^Tarou=山田^太郎=やまだ^たろう"


def test_payloads_as_the_other_tests_send_them_still_pass(app, rs, http):
    assert rs.create(workitem()).status_code == 201
    uid = generate_uid()
    payload = as_json(workitem())
    payload["00080018"] = {"vr": "UI", "Value": [uid + "\u0000"]}  # a UID's NUL padding is stripped
    assert rs.create([payload]).headers["location"].endswith(f"/{uid}")
    ian = make_ian(series={generate_uid(): [instance_item(url="http://pacs/wado/1") for _ in range(1000)]})
    assert http.post("/api/ian", json=ian.to_json_dict()).status_code == 200
    assert len(study_report(app.engine, ian.StudyInstanceUID)["instances"]) == 1000
    step = in_progress(generate_uid()).to_json_dict() | {"00080018": {"vr": "UI", "Value": [generate_uid()]}}
    assert http.post("/api/mpps", json=step).status_code == 201


# ------------------------------------------------------------------ Search, Create and Subscribe parameters

@pytest.mark.parametrize("params, says", [
    ({"offset": "9223372036854775808"}, "offset="), ({"offset": str(2 ** 31)}, "offset="),
    ({"limit": str(2 ** 31)}, "limit="), ({"offset": "1_000"}, "offset="),
    ({"includefield": "FFFEE000"}, "FFFEE000: an item or delimiter tag"),
    ({"includefield": "FFFEE0DD"}, "FFFEE0DD: an item or delimiter tag"),
    ({"includefield": "00000000"}, "00000000: a command element"),
    ({"includefield": "00020010"}, "00020010: a file meta element"),
    ({"includefield": "Item"}, "FFFEE000: an item or delimiter tag"),
    ({"includefield": "CommandGroupLength"}, "00000000: a command element"),
    ({"00000000": "4"}, "00000000: a command element"),
], ids=["offset 2**63", "offset 2**31", "limit 2**31", "offset 1_000", "item",
        "sequence delimiter", "command", "file meta", "Item keyword", "command keyword", "command key"])
def test_search_refuses_out_of_range_counts_and_non_attributes(rs, params, says):
    response = rs.search(params)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert says in warning_of(response)


def test_search_counts_go_up_to_2_31_minus_1(rs):
    assert rs.search({"offset": str(2 ** 31 - 1), "limit": str(2 ** 31 - 1)}).status_code == 204
    for name in ("offset", "limit"):
        response = rs.search({name: str(2 ** 31)})
        assert response.status_code == 400 and f"must be from {int(name == 'limit')} to 2147483647" in \
            warning_of(response)


def test_create_refuses_a_repeated_workitem_parameter(rs):
    first_uid, second_uid = generate_uid(), generate_uid()
    response = rs.http.post(BASE, params=[("workitem", first_uid), ("workitem", second_uid)],
                            json=as_json(workitem()), headers={"Content-Type": "application/dicom+json"})
    assert response.status_code == 400 and "workitem parameter is given more than once" in warning_of(response)
    assert rs.retrieve(first_uid).status_code == 404 and rs.retrieve(second_uid).status_code == 404


@pytest.mark.parametrize("uid", [GLOBAL, FILTERED])
@pytest.mark.parametrize("where", ["parameter", "payload"])
def test_create_refuses_the_well_known_uids(rs, uid, where):
    payload = as_json(workitem())
    if where == "payload":
        payload["00080018"] = {"vr": "UI", "Value": [uid]}
    response = rs.create(payload, uid=uid if where == "parameter" else None)
    assert response.status_code == 400, response.headers.get("location")
    said = warning_of(response)
    assert said.startswith("299 wfm: The request payload did not satisfy the requirements of Table CC.2.5-3")
    assert f"SOP Instance UID {uid} is reserved" in said and said.endswith("(0106)")
    assert rs.retrieve(uid).status_code == 404


def test_subscribe_percent_encodes_the_ae_title_in_content_location(app, rs, scheduled):
    from websockets.sync.client import connect

    ae = "A B?#"
    response = rs.http.post(f"{BASE}/{scheduled}/subscribers/{quote(ae, safe='')}")
    assert response.status_code == 201, warning_of(response)
    location = response.headers["content-location"]
    assert location == f"ws://127.0.0.1:{app.http.port}/dicom-web/subscribers/A%20B%3F%23"
    with connect(location, open_timeout=10) as channel:  # the URL answered is the subscriber's channel
        report = json.loads(channel.recv(timeout=15))
    assert report["00001000"]["Value"] == [scheduled]


# ------------------------------------------------------------------ the validator's rules, one by one

@pytest.fixture(scope="module")
def check():
    from workflow.kernel.dicom_json_check import DicomJsonError, check
    return check, DicomJsonError


REFUSED = [
    ([], "the payload: not a DICOM JSON data set"),
    ({"PatientID": {"vr": "LO"}}, "'PatientID' is not a DICOM JSON tag"),
    ({"0010002G": {"vr": "LO"}}, "'0010002G' is not a DICOM JSON tag"),
    ({"00100020": "P1"}, '00100020: an element must be an object with a "vr"'),
    ({"00100020": {"Value": ["P1"]}}, "00100020: an element must be an object"),
    ({"00100020": {"vr": 5}}, "00100020: an element must be an object"),
    ({"00100020": {"vr": ["LO"]}}, "00100020: an element must be an object"),
    ({"00100020": {"vr": {"LO": 1}}}, "00100020: an element must be an object"),
    ({"00100020": {"vr": "LO", "Value": "P1"}}, '00100020: "Value" must be an array'),
    ({"00100020": {"vr": "LO", "Value": [True]}}, "00100020: LO values are strings, not True"),
    ({"00100020": {"vr": "LO", "value": ["P1"]}}, "00100020: 'value' is not a member of a DICOM JSON element"),
    ({"00100020": {"vr": "L0"}}, "'L0' is not a value representation"),
    ({"00100020": {"vr": "UN", "InlineBinary": ""}}, "00100020: VR UN is not the attribute's (LO)"),
    ({"00280010": {"vr": "OW"}}, "00280010: VR OW is not the attribute's (US)"),
    ({"00010010": {"vr": "LO"}}, "00010010: group 0001 is not allowed"),
    ({"FFFFFFFF": {"vr": "LO"}}, "FFFFFFFF: group FFFF is not allowed"),
    ({"0020000D": {"vr": "UI", "Value": ["1" * 65]}}, "UI values are at most 64 characters"),
    ({"0020000D": {"vr": "UI", "Value": ["1.2\u00003"]}}, "UI value with a NUL character"),
    ({"00080060": {"vr": "CS", "Value": ["C" * 17]}}, "CS values are at most 16 characters"),
    ({"00080054": {"vr": "AE", "Value": ["A" * 17]}}, "AE values are at most 16 characters"),
    ({"00100021": {"vr": "LO", "Value": ["x" * 65]}}, "LO values are at most 64 characters"),
    ({"00080050": {"vr": "SH", "Value": ["x" * 17]}}, "SH values are at most 16 characters"),
    ({"00100030": {"vr": "DA", "Value": ["202601011"]}}, "DA values are at most 8 characters"),
    ({"00080030": {"vr": "TM", "Value": ["1" * 15]}}, "TM values without a fraction are at most 14"),
    ({"00080030": {"vr": "TM", "Value": ["120000.1234567890"]}}, "TM values are at most 16 characters"),
    ({"0040A120": {"vr": "DT", "Value": ["2" * 27]}}, "DT values are at most 26 characters"),
    ({"00101010": {"vr": "AS", "Value": ["042YY"]}}, "AS values are at most 4 characters"),
    ({"00324000": {"vr": "LT", "Value": ["x" * 10241]}}, "LT values are at most 10240 characters"),
    ({"00081030": {"vr": "LO", "Value": [None, "x" * 65]}}, "00081030: LO values are at most 64 characters"),
    ({"0040A160": {"vr": "UT", "Value": ["\u0000"]}}, "UT value with a NUL character"),
    ({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "x" * 65}]}}, "PN component groups are at most 64"),
    ({"00100010": {"vr": "PN", "Value": ["a=b=c=d"]}}, "PN values have at most 3 component groups"),
    ({"00100010": {"vr": "PN", "Value": [5]}}, "PN values are objects of component groups"),
    ({"00100010": {"vr": "PN", "Value": [{"Alphabetic": None}]}}, "the PN Alphabetic group is a string"),
    ({"00200013": {"vr": "IS", "Value": ["1.5"]}}, "'1.5' is not an integer string (IS)"),
    ({"00200013": {"vr": "IS", "Value": [2 ** 31]}}, "is out of the range of IS"),
    ({"00200013": {"vr": "IS", "Value": ["1234567890123"]}}, "IS values are at most 12 characters"),
    ({"00200013": {"vr": "IS", "Value": [float("nan")]}}, "is not a whole number (IS)"),
    ({"00200013": {"vr": "IS", "Value": [True]}}, "IS values are numbers or numeric strings"),
    ({"00101020": {"vr": "DS", "Value": [float("nan")]}}, "nan is not a finite number (DS)"),
    ({"00101020": {"vr": "DS", "Value": [10 ** 400]}}, "is not a finite number (DS)"),
    ({"00101020": {"vr": "DS", "Value": ["1e999"]}}, "'1e999' is not a finite number (DS)"),
    ({"00101020": {"vr": "DS", "Value": ["1.2.3"]}}, "'1.2.3' is not a decimal string (DS)"),
    ({"00101020": {"vr": "DS", "Value": ["12345678901234567"]}}, "DS values are at most 16 characters"),
    ({"00720068": {"vr": "LT", "Value": [1.0]}}, "LT values are strings"),
    ({"00189089": {"vr": "FD", "Value": [float("inf")]}}, "inf is not a finite FD number"),
    ({"00189089": {"vr": "FD", "Value": [10 ** 400]}}, "is not a finite FD number"),
    ({"00189089": {"vr": "FD", "Value": ["1.0"]}}, "FD values are numbers"),
    ({"00720076": {"vr": "FL", "Value": [1e39]}}, "1e+39 is not a finite FL number"),
    ({"00280010": {"vr": "US", "Value": [1.0]}}, "US values are integers, not 1.0"),
    ({"00280010": {"vr": "US", "Value": [None]}}, "US values are integers, not None"),
    ({"00280106": {"vr": "SS", "Value": [2 ** 15]}}, "32768 is out of the range of SS (-32768 to 32767)"),
    ({"00282000": {"vr": "OB", "InlineBinary": 5}}, "InlineBinary must be a base64 string"),
    ({"00091001": {"vr": "SL", "Value": [2 ** 31]}}, "is out of the range of SL"),
    ({"00091001": {"vr": "UL", "Value": [-1]}}, "-1 is out of the range of UL"),
    ({"00091001": {"vr": "SV", "Value": [2 ** 63]}}, "is out of the range of SV"),
    ({"00091001": {"vr": "UV", "Value": [2 ** 64]}}, "is out of the range of UV"),
    ({"00091001": {"vr": "AT", "Value": ["0010002"]}}, "AT values are tags of 8 hexadecimal digits"),
    ({"00091001": {"vr": "UN", "Value": ["x"]}}, "UN elements have no \"Value\""),
    ({"00091001": {"vr": "OB", "BulkDataURI": "http://x"}}, "BulkDataURI is not accepted"),
    ({"00091001": {"vr": "SQ", "Value": [None]}}, "00091001[0]: not a DICOM JSON data set"),
    ({"00400275": {"vr": "SQ", "Value": [{}, {"00400009": {"vr": "SH", "Value": [1]}}]}},
     "00400275[1].00400009: SH values are strings"),
    ({"00400275": {"vr": "SQ", "Value": [{"0040A730": {"vr": "SQ", "Value": [{"00000000": {"vr": "UL"}}]}}]}},
     "00400275[0].0040A730[0].00000000: a command element"),
]


@pytest.mark.parametrize("ds, says", REFUSED, ids=[says[:40] for _, says in REFUSED])
def test_the_validator_refuses_naming_the_first_fault(check, ds, says):
    validate, error = check
    with pytest.raises(error) as refused:
        validate(ds)
    assert says in str(refused.value), str(refused.value)


ACCEPTED = [
    ({"00100020": {"vr": "LO", "Value": ["P1"]}}, {"00100020": {"vr": "LO", "Value": ["P1"]}}),
    ({"0020000d": {"vr": "UI", "Value": ["1.2"]}}, {"0020000D": {"vr": "UI", "Value": ["1.2"]}}),
    ({"0020000D": {"vr": "UI", "Value": ["1.2\u0000"]}}, {"0020000D": {"vr": "UI", "Value": ["1.2"]}}),
    ({"00100020": {"vr": "LO"}}, {"00100020": {"vr": "LO"}}),
    ({"00100020": {"vr": "LO", "Value": []}}, {"00100020": {"vr": "LO", "Value": []}}),
    ({"00081030": {"vr": "LO", "Value": [None, "b"]}}, {"00081030": {"vr": "LO", "Value": [None, "b"]}}),
    ({"00100010": {"vr": "PN", "Value": ["Doe^Jane", None, {}]}},
     {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}, None, {}]}}),
    ({"00100010": {"vr": "PN", "Value": ["A^B=C^D"]}},
     {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B", "Ideographic": "C^D"}]}}),
    ({"00200013": {"vr": "IS", "Value": [" 12 ", 3, 4.0, " "]}},
     {"00200013": {"vr": "IS", "Value": [" 12 ", 3, 4.0, None]}}),
    ({"00101020": {"vr": "DS", "Value": ["1.5", ".5", "-1e3", 2, 0.1]}},
     {"00101020": {"vr": "DS", "Value": ["1.5", ".5", "-1e3", 2, 0.1]}}),
    ({"00280010": {"vr": "US", "Value": [0, 65535]}}, {"00280010": {"vr": "US", "Value": [0, 65535]}}),
    ({"00280106": {"vr": "SS", "Value": [-32768]}}, {"00280106": {"vr": "SS", "Value": [-32768]}}),
    ({"00280106": {"vr": "US", "Value": [1]}}, {"00280106": {"vr": "US", "Value": [1]}}),  # "US or SS"
    ({"7FE00010": {"vr": "OW", "InlineBinary": "AAAA"}}, {"7FE00010": {"vr": "OW", "InlineBinary": "AAAA"}}),
    ({"60003000": {"vr": "OB"}}, {"60003000": {"vr": "OB"}}),  # a repeating group's "OB or OW"
    ({"00091001": {"vr": "UT", "Value": ["x" * 100_000]}}, {"00091001": {"vr": "UT", "Value": ["x" * 100_000]}}),
    ({"00100021": {"vr": "LO", "Value": ["x" * 64]}}, {"00100021": {"vr": "LO", "Value": ["x" * 64]}}),
    ({"00080030": {"vr": "TM", "Value": ["120000.123456"]}}, {"00080030": {"vr": "TM", "Value": ["120000.123456"]}}),
    ({"00211001": {"vr": "FD", "Value": [1.0]}}, {"00211001": {"vr": "FD", "Value": [1.0]}}),
    ({"00400275": {"vr": "SQ", "Value": [{"00401001": {"vr": "SH", "Value": ["RP1"]}}]}},
     {"00400275": {"vr": "SQ", "Value": [{"00401001": {"vr": "SH", "Value": ["RP1"]}}]}}),
]


@pytest.mark.parametrize("ds, expected", ACCEPTED, ids=[str(i) for i in range(len(ACCEPTED))])
def test_the_validator_accepts_and_normalises(check, ds, expected):
    validate, _ = check
    assert validate(ds) == expected


def test_sequences_nest_at_most_32_deep(check):
    validate, error = check
    validate(nested(32))
    with pytest.raises(error, match="nested more than 32 deep"):
        validate(nested(33))


def test_the_validator_takes_a_1000_instance_ian_in_a_few_milliseconds(check):
    validate, _ = check
    ian = make_ian(series={generate_uid(): [instance_item(url="http://pacs/wado/1") for _ in range(1000)]})
    ds = json.loads(json.dumps(ian.to_json_dict()))
    validate(ds)
    best = min(_timed(validate, ds) for _ in range(5))
    assert best < 0.05, f"{best * 1000:.1f} ms"  # ~3 ms on a developer machine; generous for a loaded CI


def _timed(validate, ds) -> float:
    started = time.perf_counter()
    validate(ds)
    return time.perf_counter() - started


@pytest.mark.parametrize("raw, fault", [(b"NaN", "NaN"), (b"[Infinity]", "Infinity"), (b"1" * 5000, "4300"),
                                        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                                        (b"\xff", "utf-8"), (b"{", "Expecting")])
def test_loads_refuses_what_is_not_json(raw, fault):
    from workflow.kernel.dicom_json_check import NotJson, loads
    with pytest.raises(NotJson, match=fault):
        loads(raw)
