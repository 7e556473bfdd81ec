"""IAN and MPPS over HTTP go through the same validation and services as over DIMSE: the same status,
comment and attribute list for the same data set, valid or not, and the same stored result."""

from __future__ import annotations

import copy

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from testkit.http import client
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import completed, in_progress
from testkit.ups import ups_association, workitem
from workflow.access.tokens import Tokens
from workflow.overview.study import study_report

pytestmark = pytest.mark.slow


def over_dimse(app, ds: Dataset, uid: str) -> tuple[str, str | None, set[str]]:
    with association(app.dicom.port) as assoc:
        status, _ = send(assoc, ds, uid)
    listed = status.get("AttributeIdentifierList", [])
    listed = listed if listed.__class__.__name__ in ("list", "MultiValue") else [listed]
    return f"{int(status.Status):04X}", status.get("ErrorComment"), {f"{int(t):08X}" for t in listed}


def over_http(app, ds: Dataset, uid: str | None):
    body = ds.to_json_dict()
    if uid:
        body["00080018"] = {"vr": "UI", "Value": [uid]}
    with client(app) as http:
        answer = http.post("/api/ian", json=body)
    return answer


def case(name: str) -> Dataset:
    ian = make_ian()
    if name == "valid":
        return ian
    if name == "study missing":
        del ian.StudyInstanceUID
    elif name == "no series":
        ian.ReferencedSeriesSequence = []
    elif name == "bad availability":
        ian.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].InstanceAvailability = "SOMEWHERE"
    elif name == "bad uid":
        ian.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.x"
    elif name == "two pps items":
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.3", generate_uid()
        item.PerformedWorkitemCodeSequence = []
        ian.ReferencedPerformedProcedureStepSequence = [item, copy.deepcopy(item)]
    return ian


@pytest.mark.parametrize("name, http_code", [("valid", 200), ("study missing", 400), ("no series", 400),
                                             ("bad availability", 400), ("bad uid", 400), ("two pps items", 400)])
def test_ian_over_http_answers_what_dimse_answers(app, name, http_code):
    ds = case(name)
    dimse_status, dimse_comment, dimse_tags = over_dimse(app, ds, generate_uid())
    answer = over_http(app, ds, generate_uid())
    body = answer.json()
    assert answer.status_code == http_code
    assert (body["status"], body["comment"]) == (dimse_status, dimse_comment)
    # The attributes concerned: DIMSE carries the list only with 0120/0121 in an N-CREATE response; HTTP
    # always names them.
    assert dimse_tags <= set(body["attributes"]) and (dimse_tags or body["status"] not in ("0120", "0121"))
    if http_code != 200:
        assert answer.headers["Warning"].startswith("299 wfm: ") and dimse_status in answer.headers["Warning"]


def test_ian_over_http_stores_what_dimse_stores(app):
    ian = make_ian(series={generate_uid(): [instance_item(url="http://pacs/wado/1") for _ in range(3)]})
    over_dimse(app, ian, generate_uid())
    by_dimse = study_report(app.engine, ian.StudyInstanceUID)
    twin = copy.deepcopy(ian)  # the same instances again, announced over HTTP
    assert over_http(app, twin, generate_uid()).status_code == 200
    by_http = study_report(app.engine, ian.StudyInstanceUID)
    assert untimed(by_http["instances"]) == untimed(by_dimse["instances"]) and len(by_http["notifications"]) == 2
    assert {n["calling_ae_title"] for n in by_http["notifications"]} == {"MODALITY", "anonymous"}


def untimed(value):
    """The value without its times (when each IAN came) and notification ids."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith(("_at", "notification_id"))}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_ian_over_http_assigns_a_uid_and_refuses_a_duplicate(app):
    ian = make_ian()
    answer = over_http(app, ian, None)
    assert answer.status_code == 200 and answer.json()["sop_instance_uid"]
    uid = answer.json()["sop_instance_uid"]
    other = make_ian()
    assert over_http(app, other, uid).status_code == 409  # another IAN under the same UID: 0111
    assert over_http(app, ian, uid).status_code == 200  # the same IAN again: a safe retry


@pytest.mark.parametrize("body, says", [("not json", "not JSON"), ("[1, 2]", "one DICOM JSON data set"),
                                        ('{"0020000D": "1.2.3"}', "must be an object"),
                                        ('{"StudyInstanceUID": {"vr": "UI"}}', "not a DICOM JSON tag")])
def test_a_body_that_is_not_a_dicom_json_data_set_is_400(app, body, says):
    with client(app) as http:
        answer = http.post("/api/ian", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and says in answer.json()["error"]


def test_mpps_over_http_drives_readiness_like_dimse(app):
    wi = workitem(InputReadinessState="INCOMPLETE")
    with ups_association(app.dicom.port) as assoc:
        uid = generate_uid()
        assert assoc.send_n_create(wi, "1.2.840.10008.5.1.4.34.6.1", uid)[0].Status == 0
    series = {generate_uid(): [generate_uid() for _ in range(2)]}
    step = generate_uid()
    start = in_progress(wi.StudyInstanceUID).to_json_dict()
    start["00080018"] = {"vr": "UI", "Value": [step]}
    with client(app) as http:
        created = http.post("/api/mpps", json=start)
        assert created.status_code == 201 and created.json()["sop_instance_uid"] == step
        assert http.post("/api/mpps", json=start).status_code == 409  # 0111
        done = http.post(f"/api/mpps/{step}", json=completed(series).to_json_dict())
        assert done.status_code == 200, done.json()
        assert http.post(f"/api/mpps/{step}", json=completed(series).to_json_dict()).status_code == 409  # A710
        assert http.post(f"/api/mpps/{generate_uid()}", json=completed(series).to_json_dict()).status_code == 404
        ian = make_ian(study_uid=wi.StudyInstanceUID,
                       series={s: [instance_item(u) for u in uids] for s, uids in series.items()})
        assert http.post("/api/ian", json=ian.to_json_dict()).status_code == 200
    import time
    deadline = time.monotonic() + 15
    while app.readiness.explain(uid, __import__("workflow.kernel.clock", fromlist=["utcnow"]).utcnow())[
            "input_readiness_state"] != "READY":
        assert time.monotonic() < deadline, "the workitem did not become READY"
        time.sleep(0.05)


def test_notify_right_is_needed(app):
    tokens = Tokens(app.engine)
    reader, notifier = tokens.create("ianreader", "read"), tokens.create("notifier", "notify")
    app.tokens._open_checked = None
    try:
        body = make_ian().to_json_dict()
        with client(app) as http:
            assert http.post("/api/ian", json=body).status_code == 401
        with client(app, reader) as http:
            assert http.post("/api/ian", json=body).status_code == 403
            assert http.post("/api/mpps", json=body).status_code == 403
        with client(app, notifier) as http:
            answer = http.post("/api/ian", json=body)
        assert answer.status_code == 200
        assert {n["calling_ae_title"] for n in study_report(app.engine, body["0020000D"]["Value"][0])[
            "notifications"]} == {"notifier"}
    finally:
        tokens.revoke("ianreader")
        tokens.revoke("notifier")
        app.tokens._open_checked = None
