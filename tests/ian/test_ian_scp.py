"""The IAN SCP over real associations on 127.0.0.1, against SQLite and PostgreSQL."""


from __future__ import annotations

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import InstanceAvailabilityNotification
from sqlalchemy import func, select

from testkit.ian import association, instance_item, make_ian, send
from testkit.db import test_settings
from workflow.app import App
from workflow.dimse.nodelay import NoDelayAE
from workflow.overview.study import study_report
from workflow.ian.tables import Instance, InstanceLocation, Notification

# The tests build invalid values on purpose; pydicom warns about them on the sending side.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Invalid value for VR", "ignore:The value length")]


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def counts(engine) -> tuple[int, int, int]:
    return count(engine, Notification), count(engine, Instance), count(engine, InstanceLocation)


def test_echo(server):
    with association(server.dicom.port) as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000


def test_valid_ian_is_stored_and_reported(server):
    series_uid = generate_uid()
    items = [instance_item(url=f"http://pacs/wado/{i}") for i in range(3)]
    ian = make_ian(series={series_uid: items}, pps_uid="1.2.3.4.5")
    with association(server.dicom.port) as assoc:
        status, uid = send(assoc, ian)
    assert status.Status == 0x0000
    report = study_report(server.engine, ian.StudyInstanceUID)
    assert report["study_instance_uid"] == ian.StudyInstanceUID
    assert {i["sop_instance_uid"] for i in report["instances"]} == {it.ReferencedSOPInstanceUID for it in items}
    first = next(i for i in report["instances"] if i["sop_instance_uid"] == items[0].ReferencedSOPInstanceUID)
    assert first["series_instance_uid"] == series_uid
    assert first["sop_class_uid"] == items[0].ReferencedSOPClassUID
    assert first["availability"] == "ONLINE"
    assert first["retrieve_ae_titles"] == ["PACS"]
    assert first["retrieve_url"] == "http://pacs/wado/0"
    assert first["performed_procedure_step_uids"] == ["1.2.3.4.5"]
    assert first["locations"] == [{
        "ae_title": "PACS", "availability": "ONLINE", "retrieve_url": "http://pacs/wado/0", "retrieve_uri": None,
        "retrieve_location_uid": None, "file_set_id": None, "file_set_uid": None,
        "notified_at": first["locations"][0]["notified_at"]}]
    [notification] = report["notifications"]
    assert notification["sop_instance_uid"] == uid
    assert notification["calling_ae_title"] == "MODALITY"
    assert notification["instance_count"] == 3
    with server.engine.connect() as conn:
        stored = conn.execute(select(Notification.dataset_json).where(Notification.sop_instance_uid == uid)).scalar_one()
    assert ian.StudyInstanceUID in stored and '"00081115"' in stored  # kept as received, DICOM JSON


def test_explicit_vr_little_endian_is_accepted(server):
    ian = make_ian()
    with association(server.dicom.port, transfer_syntax=ExplicitVRLittleEndian) as assoc:
        status, _ = send(assoc, ian)
    assert status.Status == 0x0000
    assert len(study_report(server.engine, ian.StudyInstanceUID)["instances"]) == 3


def _drop(path):
    def change(ds):
        *parents, last = path
        target = ds
        for step in parents:
            target = target[step] if isinstance(step, int) else getattr(target, step)
        delattr(target, last)
    return change


def _set(path, value):
    def change(ds):
        *parents, last = path
        target = ds
        for step in parents:
            target = target[step] if isinstance(step, int) else getattr(target, step)
        setattr(target, last, value)
    return change


S0 = ("ReferencedSeriesSequence", 0)
I0 = S0 + ("ReferencedSOPSequence", 0)

INVALID = [
    ("study uid missing", _drop(("StudyInstanceUID",)), 0x0120, 0x0020000D),
    ("study uid empty", _set(("StudyInstanceUID",), ""), 0x0121, 0x0020000D),
    ("study uid malformed", _set(("StudyInstanceUID",), "1.2.abc"), 0x0106, None),
    ("study uid two values", _set(("StudyInstanceUID",), ["1.2.3", "1.2.4"]), 0x0106, None),
    ("series sequence missing", _drop(("ReferencedSeriesSequence",)), 0x0120, 0x00081115),
    ("series sequence empty", _set(("ReferencedSeriesSequence",), []), 0x0121, 0x00081115),
    ("series uid missing", _drop(S0 + ("SeriesInstanceUID",)), 0x0120, 0x0020000E),
    ("series uid leading zero", _set(S0 + ("SeriesInstanceUID",), "1.02.3"), 0x0106, None),
    ("sop sequence missing", _drop(S0 + ("ReferencedSOPSequence",)), 0x0120, 0x00081199),
    ("sop sequence empty", _set(S0 + ("ReferencedSOPSequence",), []), 0x0121, 0x00081199),
    ("sop instance uid missing", _drop(I0 + ("ReferencedSOPInstanceUID",)), 0x0120, 0x00081155),
    ("sop class uid empty", _set(I0 + ("ReferencedSOPClassUID",), ""), 0x0121, 0x00081150),
    ("availability missing", _drop(I0 + ("InstanceAvailability",)), 0x0120, 0x00080056),
    ("availability empty", _set(I0 + ("InstanceAvailability",), ""), 0x0121, 0x00080056),
    ("availability unknown", _set(I0 + ("InstanceAvailability",), "SOMETIMES"), 0x0106, None),
    ("retrieve ae missing", _drop(I0 + ("RetrieveAETitle",)), 0x0120, 0x00080054),
    ("retrieve ae too long", _set(I0 + ("RetrieveAETitle",), "A_VERY_LONG_AE_TITLE"), 0x0106, None),
    ("retrieve location uid malformed", _set(I0 + ("RetrieveLocationUID",), "not-a-uid"), 0x0106, None),
    ("pps item without instance uid", _drop(("ReferencedPerformedProcedureStepSequence", 0,
                                             "ReferencedSOPInstanceUID")), 0x0120, 0x00081155),
]


@pytest.mark.parametrize("name,change,expected,tag", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_ian_gets_its_status_and_stores_nothing(server, name, change, expected, tag):
    good_series = {generate_uid(): [instance_item()]}
    ian = make_ian(series={**{generate_uid(): [instance_item()]}, **good_series}, pps_uid="1.2.3.4")
    study_uid = ian.StudyInstanceUID
    change(ian)
    before = counts(server.engine)
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, ian)
        assert assoc.is_established  # the server keeps serving
        assert assoc.send_c_echo().Status == 0
    assert status.Status == expected, status.get("ErrorComment")
    assert status.ErrorComment
    assert len(status.ErrorComment) <= 64
    if tag is not None:
        assert [int(t) for t in _as_list(status.AttributeIdentifierList)] == [tag]
    assert counts(server.engine) == before
    assert study_report(server.engine, study_uid) is None


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_two_pps_items_are_refused(server):
    ian = make_ian(pps_uid="1.2.3.4")
    ian.ReferencedPerformedProcedureStepSequence.append(ian.ReferencedPerformedProcedureStepSequence[0])
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, ian)
    assert status.Status == 0x0106


def test_a_bad_item_after_good_ones_stores_nothing(server):
    items = [instance_item() for _ in range(5)] + [instance_item(availability="MAYBE")]
    ian = make_ian(series={generate_uid(): items})
    before = counts(server.engine)
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, ian)
    assert status.Status == 0x0106
    assert "InstanceAvailability" in status.ErrorComment
    assert counts(server.engine) == before


def test_absent_type2_pps_sequence_is_accepted(server):
    ian = make_ian()
    del ian.ReferencedPerformedProcedureStepSequence
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, ian)
    assert status.Status == 0x0000


def test_malformed_affected_sop_instance_uid(server):
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, make_ian(), uid="1.2.03")
    assert status.Status == 0x0106


def test_undecodable_data_set_gets_0110(server, monkeypatch):
    before = counts(server.engine)
    # Length field claims 255 bytes where 3 follow.
    monkeypatch.setattr("pynetdicom.association.encode", lambda *a: b"\x20\x00\x0d\x00\xff\x00\x00\x00abc")
    with association(server.dicom.port) as assoc:
        status, _ = send(assoc, make_ian())
    assert status.Status == 0x0110
    assert "undecodable" in status.ErrorComment
    assert counts(server.engine) == before


def test_identical_resend_succeeds_without_duplicating(server):
    ian = make_ian()
    uid = generate_uid()
    with association(server.dicom.port) as assoc:
        first, _ = send(assoc, ian, uid)
        before = counts(server.engine)
        again, _ = send(assoc, ian, uid)
    assert (first.Status, again.Status) == (0, 0)
    assert counts(server.engine) == before
    assert len(study_report(server.engine, ian.StudyInstanceUID)["notifications"]) == 1


def test_same_uid_with_other_content_is_a_duplicate(server):
    ian = make_ian()
    uid = generate_uid()
    other = make_ian(study_uid=ian.StudyInstanceUID)
    with association(server.dicom.port) as assoc:
        first, _ = send(assoc, ian, uid)
        before = counts(server.engine)
        conflict, _ = send(assoc, other, uid)
    assert first.Status == 0 and conflict.Status == 0x0111
    assert counts(server.engine) == before
    known = {i["sop_instance_uid"] for i in study_report(server.engine, ian.StudyInstanceUID)["instances"]}
    assert known == {it.ReferencedSOPInstanceUID for it in ian.ReferencedSeriesSequence[0].ReferencedSOPSequence}


def _locations(server, study_uid, sop_uid):
    report = study_report(server.engine, study_uid)
    return next(i for i in report["instances"] if i["sop_instance_uid"] == sop_uid)


def test_availability_is_kept_per_location_and_the_best_wins(server):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    with association(server.dicom.port) as assoc:
        send(assoc, make_ian(study, {series: [instance_item(sop, "NEARLINE", ("ARCHIVE",))]}))
        send(assoc, make_ian(study, {series: [instance_item(sop, "ONLINE", ("PACS",), url="http://pacs/1")]}))
        inst = _locations(server, study, sop)
        assert inst["availability"] == "ONLINE"
        assert inst["retrieve_ae_titles"] == ["PACS", "ARCHIVE"]
        assert inst["retrieve_url"] == "http://pacs/1"
        assert [(loc["ae_title"], loc["availability"]) for loc in inst["locations"]] == [
            ("PACS", "ONLINE"), ("ARCHIVE", "NEARLINE")]
        # The PACS purges it: the archive is now the best place, and nothing was deleted.
        send(assoc, make_ian(study, {series: [instance_item(sop, "UNAVAILABLE", ("PACS",))]}))
        inst = _locations(server, study, sop)
        assert inst["availability"] == "NEARLINE"
        assert inst["retrieve_ae_titles"] == ["ARCHIVE"]
        assert inst["retrieve_url"] is None  # only the unavailable PACS had one
        assert [(loc["ae_title"], loc["availability"]) for loc in inst["locations"]] == [
            ("ARCHIVE", "NEARLINE"), ("PACS", "UNAVAILABLE")]
        # The PACS gets it back, without repeating the URL: the URL it gave earlier stays.
        send(assoc, make_ian(study, {series: [instance_item(sop, "ONLINE", ("PACS",))]}))
        inst = _locations(server, study, sop)
        assert inst["retrieve_ae_titles"] == ["PACS", "ARCHIVE"]
        assert inst["retrieve_url"] == "http://pacs/1"


def test_between_equals_the_most_recently_notified_comes_first(server):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    with association(server.dicom.port) as assoc:
        send(assoc, make_ian(study, {series: [instance_item(sop, "ONLINE", ("PACS_A",))]}))
        send(assoc, make_ian(study, {series: [instance_item(sop, "ONLINE", ("PACS_B",))]}))
        assert _locations(server, study, sop)["retrieve_ae_titles"] == ["PACS_B", "PACS_A"]
        send(assoc, make_ian(study, {series: [instance_item(sop, "ONLINE", ("PACS_A",))]}))
        assert _locations(server, study, sop)["retrieve_ae_titles"] == ["PACS_A", "PACS_B"]


def test_one_url_belongs_to_every_listed_retrieve_ae(server):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    item = instance_item(sop, "ONLINE", ("PACS", "MIRROR"), url="http://pacs/wado/x",
                         RetrieveLocationUID="1.2.840.99", StorageMediaFileSetID="DISC1")
    with association(server.dicom.port) as assoc:
        send(assoc, make_ian(study, {series: [item]}))
    locations = {loc["ae_title"]: loc for loc in _locations(server, study, sop)["locations"]}
    assert set(locations) == {"PACS", "MIRROR"}
    for loc in locations.values():
        assert (loc["retrieve_url"], loc["retrieve_location_uid"], loc["file_set_id"]) == (
            "http://pacs/wado/x", "1.2.840.99", "DISC1")


def test_ian_without_affected_sop_instance_uid_gets_one_assigned(server):
    ian = make_ian()
    with association(server.dicom.port) as assoc:
        status, _ = assoc.send_n_create(ian, InstanceAvailabilityNotification, None)
    assert status.Status == 0
    [notification] = study_report(server.engine, ian.StudyInstanceUID)["notifications"]
    assert notification["sop_instance_uid"].startswith("1.2.")


def test_instance_limit_gives_resource_limitation(database_url):
    app = App(test_settings(database_url, max_instances_per_ian=4))
    app.start()
    try:
        before = counts(app.engine)
        with association(app.dicom.port) as assoc:
            over, _ = send(assoc, make_ian(series={generate_uid(): [instance_item() for _ in range(5)]}))
            at_limit, _ = send(assoc, make_ian(series={generate_uid(): [instance_item() for _ in range(4)]}))
        assert over.Status == 0x0213 and "limit of 4" in over.ErrorComment
        assert at_limit.Status == 0
        assert counts(app.engine)[0] == before[0] + 1
    finally:
        app.stop()


def test_calling_ae_outside_the_allow_list_is_rejected(database_url):
    app = App(test_settings(database_url, allowed_calling_aes=("ARCHIVE",)))
    app.start()
    try:
        answers = []
        ae = NoDelayAE(ae_title="STRANGER")
        ae.add_requested_context(InstanceAvailabilityNotification)
        handlers = [(evt.EVT_ACSE_RECV, lambda event: answers.append(event.primitive))]
        assoc = ae.associate("127.0.0.1", app.dicom.port, ae_title="WFM", evt_handlers=handlers)
        assert assoc.is_rejected
        rejection = answers[-1]
        # Rejected permanent, by the service user, "calling AE title not recognized".
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 3)
        with association(app.dicom.port, calling_ae="ARCHIVE") as known:
            assert known.is_established
    finally:
        app.stop()
