"""UPS behaviour beyond the state table: assignment and progress events, C-CANCEL, deletion locks and
retention, events that stay undeliverable, and the operator's commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from testkit.db import test_settings
from testkit.ups import GLOBAL, PULL, PUSH, QUERY, EventReceiver, action, claim, code, free_port, get, ups_association, workitem
from workflow.app import App
from workflow.config import RemoteAE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def watcher():
    receiver = EventReceiver("WATCH1").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def ups(database_url, watcher):
    remotes = (RemoteAE("WATCH1", "127.0.0.1", watcher.port), RemoteAE("GONE", "127.0.0.1", free_port()))
    app = App(test_settings(database_url, remote_ae=remotes, event_retry_initial=0.05,
                            event_retry_max_interval=0.1, event_retry_for=0.5))
    app.start()
    yield app
    app.stop()


def create(assoc, **overrides) -> str:
    uid = generate_uid()
    status, _ = assoc.send_n_create(workitem(**overrides), PUSH, uid)
    assert status.Status == 0, status
    return uid


def test_assignment_and_progress_events(ups, watcher):
    with ups_association(ups.dicom.port) as assoc:
        uid = create(assoc, ScheduledStationNameCodeSequence=[])
        assert action(assoc, uid, 3, ReceivingAE="WATCH1", DeletionLock="FALSE").Status == 0
        watcher.wait(lambda r: r.uid == uid and r.event_type == 1)
        mod = Dataset()
        mod.ScheduledStationNameCodeSequence = [code("CT9")]
        assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
        assigned = watcher.wait(lambda r: r.uid == uid and r.event_type == 5)
        assert assigned.info.ScheduledStationNameCodeSequence[0].CodeValue == "CT9"
        _, txn = claim(assoc, uid)
        progress = Dataset()
        progress.TransactionUID = txn
        item = Dataset()
        item.ProcedureStepProgress = 50
        item.ProcedureStepProgressDescription = "halfway"
        progress.ProcedureStepProgressInformationSequence = [item]
        assert assoc.send_n_set(progress, PUSH, uid, meta_uid=PULL)[0].Status == 0
        report = watcher.wait(lambda r: r.uid == uid and r.event_type == 3)
        assert report.info.ProcedureStepProgressInformationSequence[0].ProcedureStepProgressDescription == "halfway"
        readiness = Dataset()
        readiness.TransactionUID = txn
        readiness.InputReadinessState = "INCOMPLETE"
        assert assoc.send_n_set(readiness, PUSH, uid, meta_uid=PULL)[0].Status == 0
        report = watcher.wait(lambda r: r.uid == uid and r.event_type == 1 and
                              r.info.InputReadinessState == "INCOMPLETE")
        assert report.info.ProcedureStepState == "IN PROGRESS"


def test_c_cancel_stops_a_find(ups):
    label = f"cancel-{generate_uid()[-8:]}"
    template = workitem(WorklistLabel=label).to_json_dict()
    for _ in range(500):  # enough that the search is still running when the cancel arrives
        assert ups.worklist.create(generate_uid(), template).status.code == 0
    with ups_association(ups.dicom.port) as assoc:
        identifier = Dataset()
        identifier.WorklistLabel = label
        identifier.SOPInstanceUID = None
        responses = assoc.send_c_find(identifier, QUERY, msg_id=7)
        statuses = []
        for status, _ in responses:
            statuses.append(status.Status)
            if len(statuses) == 2:
                assoc.send_c_cancel(7, query_model=QUERY)
        assert statuses[-1] == 0xFE00
        assert len(statuses) < 500


def test_deletion_lock_holds_a_finished_workitem_past_retention(ups):
    with ups_association(ups.dicom.port) as assoc:
        locked, free = create(assoc), create(assoc)
        assert action(assoc, locked, 3, ReceivingAE="WATCH1", DeletionLock="TRUE").Status == 0
        for uid in (locked, free):
            assert action(assoc, uid, 2, ReasonForCancellation="retention test").Status == 0
    clock = ups.worklist.clock
    later = clock() + timedelta(hours=ups.settings.ups_retention_hours + 1)
    ups.worklist.clock = lambda: later
    try:
        assert ups.worklist.purge_finished() >= 1
    finally:
        ups.worklist.clock = clock
    with ups_association(ups.dicom.port) as assoc:
        assert get(assoc, locked)[0].Status == 0
        assert get(assoc, free)[0].Status == 0xC307


def test_global_subscription_with_lock_gets_initial_reports(ups, watcher):
    with ups_association(ups.dicom.port) as assoc:
        existing = create(assoc)
        assert action(assoc, GLOBAL, 3, ReceivingAE="WATCH1", DeletionLock="TRUE").Status == 0
        assert watcher.wait(lambda r: r.uid == existing).info.ProcedureStepState == "SCHEDULED"
        assert action(assoc, GLOBAL, 4, ReceivingAE="WATCH1").Status == 0


def test_an_event_nobody_receives_becomes_undeliverable(ups, database_url, tmp_path):
    with ups_association(ups.dicom.port) as assoc:
        uid = create(assoc)
        assert action(assoc, uid, 3, ReceivingAE="GONE", DeletionLock="FALSE").Status == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        owed = [e for e in ups.outbox.listing() if e["workitem_uid"] == uid and e["subscriber"] == "GONE"]
        if owed and owed[0]["status"] == "UNDELIVERABLE":
            break
        time.sleep(0.05)
    assert owed[0]["status"] == "UNDELIVERABLE" and owed[0]["attempts"] >= 1
    assert "connect" in owed[0]["last_error"] or "rejected" in owed[0]["last_error"]
    listed = json.loads(_wfm(database_url, tmp_path, "events", "--pending", "--json"))
    mine = [e for e in listed if e["workitem_uid"] == uid]
    assert mine and {"workitem_uid", "event_type_id", "subscriber", "attempts", "last_error"} <= set(mine[0])


def _wfm(database_url: str, tmp_path, *args: str) -> str:
    config = tmp_path / "cli.toml"
    config.write_text(f'database_url = "{database_url}"\n')
    result = subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ups_list_and_show(ups, database_url, tmp_path):
    label = f"cli-{generate_uid()[-8:]}"
    with ups_association(ups.dicom.port) as assoc:
        uid = create(assoc, ProcedureStepLabel=label)
        claim(assoc, uid)
    listed = json.loads(_wfm(database_url, tmp_path, "ups", "list", "--state", "IN PROGRESS", "--json"))
    mine = [w for w in listed if w["sop_instance_uid"] == uid]
    assert mine and mine[0]["procedure_step_state"] == "IN PROGRESS" and mine[0]["procedure_step_label"] == label
    shown = json.loads(_wfm(database_url, tmp_path, "ups", "show", uid, "--json"))
    assert shown["00741000"]["Value"] == ["IN PROGRESS"]
    assert "00081195" not in shown  # the Transaction UID is never shown
    assert label in _wfm(database_url, tmp_path, "ups", "list")


UNICODE_LABEL = "Kontrolle – Jürgen 患者"  # beyond ISO 8859-1: pydicom wrote "?" for what it could not encode


def test_text_beyond_ascii_reaches_dimse_requesters_and_subscribers_whole(ups, watcher):
    """DICOM JSON text is Unicode: a workitem created without a Specific Character Set (as UPS-RS
    creates one) is answered over DIMSE (N-GET, C-FIND) and reported to subscribers in ISO_IR 192, so
    that its text arrives as it was stored, not as "?"."""
    uid = generate_uid()
    created = workitem(ProcedureStepLabel=UNICODE_LABEL).to_json_dict()
    created.pop("00080005", None)
    assert ups.worklist.create(uid, created).status.code == 0
    with ups_association(ups.dicom.port) as assoc:
        status, got = get(assoc, uid, "ProcedureStepLabel")
        assert status.Status == 0 and got.SpecificCharacterSet == "ISO_IR 192"
        assert got.ProcedureStepLabel == UNICODE_LABEL
        query = Dataset()
        query.SOPInstanceUID, query.ProcedureStepLabel = uid, ""
        matches = [ds for st, ds in assoc.send_c_find(query, QUERY) if st.Status == 0xFF00]
        assert [m.ProcedureStepLabel for m in matches] == [UNICODE_LABEL]
        assert action(assoc, uid, 3, ReceivingAE="WATCH1", DeletionLock="FALSE").Status == 0
        watcher.wait(lambda r: r.uid == uid and r.event_type == 1)
        assert action(assoc, uid, 2, PUSH, SpecificCharacterSet="ISO_IR 192",
                      ReasonForCancellation="Patientin möchte nicht – 患者").Status == 0
        canceled = watcher.wait(lambda r: r.uid == uid and r.info.ProcedureStepState == "CANCELED")
        assert canceled.info.ReasonForCancellation == "Patientin möchte nicht – 患者"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_event_information_arrives_whole_in_the_syntax_the_subscriber_accepts(database_url, syntax):
    """The sender encodes Event Information from the stored DICOM JSON itself, in the transfer syntax the
    subscriber accepted, and leaves to pydicom what that encoder does not take (a decimal number): each
    report decodes to what was stored, sequences included."""
    receiver = EventReceiver("SYNTAX", transfer_syntaxes=[syntax]).start()
    app = App(test_settings(database_url, remote_ae=(RemoteAE("SYNTAX", "127.0.0.1", receiver.port),)))
    try:
        app.start()
        with ups_association(app.dicom.port) as assoc:
            uid = create(assoc, ScheduledStationNameCodeSequence=[])
            assert action(assoc, uid, 3, ReceivingAE="SYNTAX", DeletionLock="FALSE").Status == 0
            state = receiver.wait(lambda r: r.uid == uid and r.event_type == 1)
            assert (state.info.ProcedureStepState, state.info.InputReadinessState) == ("SCHEDULED", "READY")
            mod = Dataset()
            mod.ScheduledStationNameCodeSequence = [code("CT9")]
            assert assoc.send_n_set(mod, PUSH, uid, meta_uid=PULL)[0].Status == 0
            assigned = receiver.wait(lambda r: r.uid == uid and r.event_type == 5)
            station = assigned.info.ScheduledStationNameCodeSequence[0]
            assert (station.CodeValue, station.CodingSchemeDesignator) == ("CT9", code("CT9").CodingSchemeDesignator)
            _, txn = claim(assoc, uid)
            progress = Dataset()
            progress.TransactionUID = txn
            item = Dataset()
            item.ProcedureStepProgress = "37.5"  # a decimal: pydicom's writer
            item.ProcedureStepProgressDescription = "a third"
            progress.ProcedureStepProgressInformationSequence = [item]
            assert assoc.send_n_set(progress, PUSH, uid, meta_uid=PULL)[0].Status == 0
            report = receiver.wait(lambda r: r.uid == uid and r.event_type == 3)
            got = report.info.ProcedureStepProgressInformationSequence[0]
            assert (float(got.ProcedureStepProgress), got.ProcedureStepProgressDescription) == (37.5, "a third")
    finally:
        app.stop()
        receiver.stop()


def test_two_servers_on_one_postgresql_deliver_each_event_once(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serves one process; several servers share PostgreSQL")
    receiver = EventReceiver("ONCE").start()
    remotes = (RemoteAE("ONCE", "127.0.0.1", receiver.port),)
    apps = [App(test_settings(database_url, remote_ae=remotes, event_retry_initial=0.05,
                              event_retry_max_interval=0.1)) for _ in range(2)]
    try:
        for app in apps:
            app.start()
        with ups_association(apps[0].dicom.port) as assoc:
            assert action(assoc, GLOBAL, 3, ReceivingAE="ONCE", DeletionLock="FALSE").Status == 0
        uids = []
        for i in range(20):  # alternate servers, so both senders have work at once
            with ups_association(apps[i % 2].dicom.port) as assoc:
                uids.append(create(assoc))
        for uid in uids:
            receiver.wait(lambda r, uid=uid: r.uid == uid and r.event_type == 1)
        deadline = time.monotonic() + 3  # anything sent twice would arrive by now
        while time.monotonic() < deadline and not receiver.seen and receiver.reports.empty():
            time.sleep(0.05)
        duplicates = [r.uid for r in receiver.drain() if r.uid in uids and r.event_type == 1]
        assert duplicates == []
    finally:
        for app in apps:
            app.stop()
        receiver.stop()
