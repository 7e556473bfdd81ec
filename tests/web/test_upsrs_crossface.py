"""Both faces are one worklist (issue 13, item 3), on SQLite and PostgreSQL: a workitem created over DIMSE
is retrieved and claimed over UPS-RS and the reverse; a change made over HTTP reaches a DIMSE subscriber
(N-EVENT-REPORT) and a WebSocket subscriber alike; the same searches over C-FIND and UPS-RS return the
same workitems in the same order with the same values; readiness filled from IANs shows on both."""

from __future__ import annotations

import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

from testkit.http import EventSocket, http_app
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import completed, in_progress
from testkit.ups import PULL, PUSH, QUERY, EventReceiver, claim, code, get, ups_association, workitem
from testkit.upsrs import UpsRs, as_json, uids
from workflow.config import RemoteAE
from workflow.dimse.nodelay import NoDelayAE

pytestmark = pytest.mark.slow

STATE, READINESS, INPUTS = "00741000", "00404041", "00404021"
AFFECTED_UID, EVENT_TYPE = "00001000", "00001002"


@pytest.fixture(scope="module")
def watcher():
    receiver = EventReceiver("RSDIMSESUB").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def app(database_url, watcher):
    with http_app(database_url, remote_ae=(RemoteAE("RSDIMSESUB", "127.0.0.1", watcher.port),),
                  event_retry_initial=0.2, event_retry_max_interval=0.5) as app:
        yield app


def dimse_create(app, **overrides) -> str:
    uid = generate_uid()
    with ups_association(app.dicom.port) as assoc:
        assert assoc.send_n_create(workitem(**overrides), PUSH, uid)[0].Status in (0x0000, 0xB300)
    return uid


def rs_create(rs: UpsRs, **overrides) -> str:
    response = rs.create(workitem(**overrides))
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def value(ds: dict, tag: str):
    return (ds.get(tag, {}).get("Value") or [None])[0]


def test_created_over_dimse_retrieved_and_claimed_over_upsrs(app, rs):
    uid = dimse_create(app, ProcedureStepLabel="made over DIMSE")
    (ds,) = rs.retrieve(uid).json()
    assert value(ds, "00741204") == "made over DIMSE" and value(ds, STATE) == "SCHEDULED"
    response, txn = rs.claim(uid)
    assert response.status_code == 200
    with ups_association(app.dicom.port) as assoc:
        assert get(assoc, uid, "ProcedureStepState")[1].ProcedureStepState == "IN PROGRESS"
        mod = Dataset()
        mod.TransactionUID = txn  # the lock taken over HTTP holds over DIMSE
        mod.ProcedureStepLabel = "updated over DIMSE"
        assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
        assert claim(assoc, uid)[0].Status == 0xC301  # and nobody else takes it
    assert value(rs.retrieve(uid).json()[0], "00741204") == "updated over DIMSE"


def test_created_over_upsrs_retrieved_and_claimed_over_dimse(app, rs):
    uid = rs_create(rs, ProcedureStepLabel="made over UPS-RS")
    with ups_association(app.dicom.port) as assoc:
        status, ds = get(assoc, uid, "ProcedureStepLabel", "ProcedureStepState")
        assert status.Status == 0 and ds.ProcedureStepLabel == "made over UPS-RS"
        status, txn = claim(assoc, uid)
        assert status.Status == 0
    assert value(rs.retrieve(uid).json()[0], STATE) == "IN PROGRESS"
    assert rs.update(uid, {"00741204": {"vr": "LO", "Value": ["updated over UPS-RS"]}}, txn).status_code == 200
    assert rs.claim(uid)[0].status_code == 400  # another Transaction UID: C301
    with ups_association(app.dicom.port) as assoc:
        assert get(assoc, uid, "ProcedureStepLabel")[1].ProcedureStepLabel == "updated over UPS-RS"


def test_a_change_over_http_reaches_dimse_and_websocket_subscribers_alike(app, rs, watcher):
    uid = rs_create(rs)
    dimse = rs.subscribe(uid, "RSDIMSESUB")  # a configured remote AE: its events go by N-EVENT-REPORT
    assert dimse.status_code == 201 and "content-location" not in dimse.headers
    assert rs.subscribe(uid, "RSWSSUB").status_code == 201
    watcher.wait(lambda r: r.uid == uid and r.event_type == 1)  # where it stood when subscribed
    with EventSocket(app, "RSWSSUB") as socket:
        assert value(socket.next(), STATE) == "SCHEDULED"
        response, _ = rs.claim(uid)
        assert response.status_code == 200
        over_ws = socket.next()
    over_dimse = watcher.wait(lambda r: r.uid == uid and r.info.get("ProcedureStepState") == "IN PROGRESS")
    assert over_ws[AFFECTED_UID]["Value"] == [uid] and over_ws[EVENT_TYPE]["Value"] == [over_dimse.event_type]
    assert value(over_ws, STATE) == over_dimse.info.ProcedureStepState == "IN PROGRESS"
    assert value(over_ws, READINESS) == over_dimse.info.InputReadinessState


def _c_find(app, identifier: Dataset) -> list[dict]:
    with ups_association(app.dicom.port) as assoc:
        out = []
        for status, ds in assoc.send_c_find(identifier, QUERY):
            assert status.Status in (0xFF00, 0xFF01, 0x0000), status
            if status.Status in (0xFF00, 0xFF01):
                out.append(ds.to_json_dict())
    return out


def _identifier(**keys) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = ""
    ds.ProcedureStepState = ""
    ds.ScheduledProcedureStepStartDateTime = ""
    ds.PatientName = ""
    ds.ScheduledStationNameCodeSequence = []
    for key, v in keys.items():
        setattr(ds, key, v)
    return ds


def _station(value: str) -> list[Dataset]:
    item = Dataset()
    item.CodeValue = value
    return [item]


def test_the_same_searches_over_c_find_and_upsrs_give_the_same_workitems_in_order(app, rs):
    label = f"both-{generate_uid()[-10:]}"
    made = []
    for n, (station, start, name) in enumerate([("CT1", "20261123080000", "Doe^Jane"), ("MR1", "20261123070000", "Roe^Ann"),
                                                ("CT1", "20261124090000", "Doe^John"), ("US1", "20261123070000", "Poe^Ed")]):
        make = dimse_create if n % 2 else (lambda app, **kw: rs_create(rs, **kw))
        made.append(make(app, WorklistLabel=label, ScheduledStationNameCodeSequence=[code(station)],
                         ScheduledProcedureStepStartDateTime=start, PatientName=name))
    rs.claim(made[3])
    queries = [
        _identifier(WorklistLabel=label),
        _identifier(WorklistLabel=label, ProcedureStepState="SCHEDULED"),
        _identifier(WorklistLabel=label, ScheduledStationNameCodeSequence=_station("CT1")),
        _identifier(WorklistLabel=label, ScheduledProcedureStepStartDateTime="20261123000000-20261123235959"),
        _identifier(WorklistLabel=label, PatientName="Doe*"),
        _identifier(SOPInstanceUID="\\".join(made[1:3])),
        _identifier(WorklistLabel=label, PatientName="Nobody*"),
    ]
    for identifier in queries:
        over_dimse = _c_find(app, identifier)
        response = rs.search_like(identifier.to_json_dict())
        over_rs = response.json() if response.status_code == 200 else []
        assert uids(response) == [value(m, "00080018") for m in over_dimse], identifier
        for a, b in zip(over_dimse, over_rs):  # the same values for every key the identifier asked
            for tag in identifier.to_json_dict():
                assert a.get(tag, {}).get("Value") == b.get(tag, {}).get("Value"), tag
    assert len(uids(rs.search_like(queries[0].to_json_dict()))) == 4


def test_readiness_filled_from_ians_shows_on_both_faces(app, rs):
    study = generate_uid()
    series = {generate_uid(): [generate_uid(), generate_uid()] for _ in range(2)}
    uid = rs_create(rs, StudyInstanceUID=study, InputReadinessState="INCOMPLETE")
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(MPPS)
    assoc = ae.associate("127.0.0.1", app.dicom.port, ae_title="WFM")
    mpps = generate_uid()
    assert assoc.send_n_create(in_progress(study), MPPS, mpps)[0].Status == 0
    assert assoc.send_n_set(completed(series), MPPS, mpps)[0].Status == 0
    assoc.release()
    with association(app.dicom.port, calling_ae="ARCHIVE") as assoc:
        for series_uid, sops in series.items():
            items = [instance_item(sop, "ONLINE", ("PACS",)) for sop in sops]
            assert send(assoc, make_ian(study, {series_uid: items}))[0].Status == 0
    deadline = time.monotonic() + 15
    while value(rs.retrieve(uid).json()[0], READINESS) != "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    (over_rs,) = rs.retrieve(uid).json()
    with ups_association(app.dicom.port) as assoc:
        _, over_dimse = get(assoc, uid, "InputReadinessState", "InputInformationSequence")
    listed = {ref["00081155"]["Value"][0] for item in over_rs[INPUTS]["Value"] for ref in item["00081199"]["Value"]}
    assert value(over_rs, READINESS) == over_dimse.InputReadinessState == "READY"
    assert listed == {sop for sops in series.values() for sop in sops}
    assert over_rs[INPUTS]["Value"] == as_json(over_dimse)[INPUTS]["Value"]
    (found,) = rs.search({"SOPInstanceUID": uid, "includefield": "InputInformationSequence"}).json()
    assert found[INPUTS]["Value"] == over_rs[INPUTS]["Value"]
