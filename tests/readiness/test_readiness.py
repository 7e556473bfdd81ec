"""Readiness scenarios over real associations: IANs and MPPS move workitems' Input Information and
Input Readiness State as the default policy says, with State Reports at a real subscriber."""

from __future__ import annotations

import json
import logging
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

from testkit.db import drop_database, new_database_url, test_settings
from testkit.ian import association, instance_item, make_ian, send
from testkit.mpps import completed, in_progress
from testkit.ups import PULL, PUSH, EventReceiver, action, claim, get, ups_association, workitem
from workflow.app import App
from workflow.config import RemoteAE
from workflow.dimse.nodelay import NoDelayAE
from workflow.overview.study import study_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def subscriber():
    receiver = EventReceiver("READYSUB").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def app(database_url, subscriber):
    app = App(test_settings(database_url, remote_ae=(RemoteAE("READYSUB", "127.0.0.1", subscriber.port),)))
    app.start()
    yield app
    app.stop()


class Study:
    """A study of three series, two instances each, sent as IANs and an MPPS."""

    def __init__(self) -> None:
        self.uid = generate_uid()
        self.series = {generate_uid(): [generate_uid(), generate_uid()] for _ in range(3)}

    def all(self) -> set[str]:
        return {sop for sops in self.series.values() for sop in sops}

    def ian(self, port: int, series_uid: str, availability: str = "ONLINE", ae: str = "PACS", **extra) -> None:
        items = [instance_item(sop, availability, (ae,), url=f"http://pacs/studies/{self.uid}/series/"
                               f"{series_uid}/instances/{sop}", **extra) for sop in self.series[series_uid]]
        with association(port, calling_ae="ARCHIVE") as assoc:
            assert send(assoc, make_ian(self.uid, {series_uid: items}))[0].Status == 0

    def mpps(self, port: int) -> None:
        ae = NoDelayAE(ae_title="CT1")
        ae.add_requested_context(MPPS)
        assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
        uid = generate_uid()
        assert assoc.send_n_create(in_progress(self.uid), MPPS, uid)[0].Status == 0
        assert assoc.send_n_set(completed(self.series), MPPS, uid)[0].Status == 0
        assoc.release()


def create_incomplete(port: int, study: Study, subscribe: bool = True) -> str:
    uid = generate_uid()
    with ups_association(port) as assoc:
        status, _ = assoc.send_n_create(workitem(StudyInstanceUID=study.uid, InputReadinessState="INCOMPLETE"),
                                        PUSH, uid)
        assert status.Status in (0x0000, 0xB300)
        if subscribe:
            assert action(assoc, uid, 3, ReceivingAE="READYSUB", DeletionLock="FALSE").Status == 0
    return uid


def readiness(port: int, uid: str) -> tuple[str, set[str]]:
    with ups_association(port) as assoc:
        status, ds = get(assoc, uid, "InputReadinessState", "InputInformationSequence")
    assert status.Status == 0
    listed = {ref.ReferencedSOPInstanceUID for item in ds.InputInformationSequence
              for ref in item.ReferencedSOPSequence}
    return ds.InputReadinessState, listed


def ready_soon(port: int, uid: str, state: str = "READY", within: float = 10.0) -> tuple[str, set[str]]:
    """Readiness is evaluated by the server's worker shortly after an IAN commits: wait for it."""
    deadline = time.monotonic() + within
    while True:
        found = readiness(port, uid)
        if found[0] == state or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def evaluated(app: App, within: float = 10.0) -> None:
    """Wait until the server's readiness worker has evaluated every study IANs and MPPS marked."""
    deadline = time.monotonic() + within
    while app.readiness.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.readiness.pending() == 0


def test_mpps_three_series_ians_for_two_then_the_third(app, subscriber):
    port, study = app.dicom.port, Study()
    uid = create_incomplete(port, study)
    subscriber.wait(lambda r: r.uid == uid)  # the initial State Report
    study.mpps(port)
    first, second, third = study.series
    study.ian(port, first)
    study.ian(port, second)
    state, listed = readiness(port, uid)
    assert state == "INCOMPLETE"
    evaluated(app)
    assert procedures(app, study) == [("ACC1", "RP1", "PERFORMED", ["UPS", "MPPS", "IAN"])]
    study.ian(port, third)
    report = subscriber.wait(lambda r: r.uid == uid and r.event_type == 1 and r.info.InputReadinessState == "READY")
    assert report.info.ProcedureStepState == "SCHEDULED"
    state, listed = readiness(port, uid)
    assert state == "READY" and listed == study.all()
    with ups_association(port) as assoc:
        _, ds = get(assoc, uid, "InputInformationSequence")
    item = ds.InputInformationSequence[0]
    assert item.TypeOfInstances == "DICOM" and item.StudyInstanceUID == study.uid
    assert item.DICOMRetrievalSequence[0].RetrieveAETitle == "PACS"
    assert item.WADORSRetrievalSequence[0].RetrieveURL.endswith(f"/series/{item.SeriesInstanceUID}")
    evaluated(app)
    assert procedures(app, study) == [("ACC1", "RP1", "AVAILABLE", ["UPS", "MPPS", "IAN"])]


def procedures(app: App, study: Study) -> list[tuple]:
    return [(p["accession_number"], p["requested_procedure_id"], p["state"], p["sources"])
            for p in study_report(app.engine, study.uid)["requested_procedures"]]


def test_a_study_known_only_from_ians_is_tracked_then_named_by_its_mpps(app):
    port, study = app.dicom.port, Study()
    study.ian(port, next(iter(study.series)))
    evaluated(app)
    assert procedures(app, study) == [("", "", "IN PROGRESS", ["IAN"])]
    study.mpps(port)
    evaluated(app)
    assert procedures(app, study) == [("ACC1", "RP1", "PERFORMED", ["MPPS", "IAN"])]


def test_ians_first_workitem_later_is_ready_at_creation(app):
    port, study = app.dicom.port, Study()
    study.mpps(port)
    for series in study.series:
        study.ian(port, series)
    uid = create_incomplete(port, study)
    assert readiness(port, uid) == ("READY", study.all())


def test_inputs_name_the_file_set_the_ian_gave(app):
    port, study = app.dicom.port, Study()
    file_set_uid = generate_uid()
    study.mpps(port)
    for series in study.series:
        study.ian(port, series, StorageMediaFileSetID="DISC7", StorageMediaFileSetUID=file_set_uid)
    uid = create_incomplete(port, study, subscribe=False)
    with ups_association(port) as assoc:
        status, ds = get(assoc, uid, "InputInformationSequence")
    assert status.Status == 0 and len(ds.InputInformationSequence) == 3
    for item in ds.InputInformationSequence:
        [media] = item.DICOMMediaRetrievalSequence
        assert (media.StorageMediaFileSetID, media.StorageMediaFileSetUID) == ("DISC7", file_set_uid)
        assert item.DICOMRetrievalSequence[0].RetrieveAETitle == "PACS"


def test_offline_downgrade_and_in_progress_untouched(app, subscriber):
    port, study = app.dicom.port, Study()
    scheduled, performing = create_incomplete(port, study), create_incomplete(port, study)
    study.mpps(port)
    for series in study.series:
        study.ian(port, series)
    assert ready_soon(port, scheduled)[0] == "READY" and ready_soon(port, performing)[0] == "READY"
    with ups_association(port) as assoc:
        assert claim(assoc, performing)[0].Status == 0
    for state in ("INCOMPLETE", "READY"):  # the report at subscription, then the one READY made
        subscriber.wait(lambda r: r.uid == scheduled and r.info.InputReadinessState == state)
    study.ian(port, next(iter(study.series)), availability="OFFLINE")
    report = subscriber.wait(lambda r: r.uid == scheduled and r.info.InputReadinessState == "INCOMPLETE")
    assert report.info.ProcedureStepState == "SCHEDULED"
    assert readiness(port, scheduled)[0] == "INCOMPLETE"
    assert readiness(port, performing)[0] == "READY"  # IN PROGRESS is never touched


def test_duplicate_and_reordered_ians_change_nothing(app):
    port, study = app.dicom.port, Study()
    uid = create_incomplete(port, study)
    series = list(study.series)
    for s in reversed(series):
        study.ian(port, s)
    study.ian(port, series[0])  # a duplicate
    study.mpps(port)
    assert ready_soon(port, uid) == ("READY", study.all())


def test_settle_timer_fires_across_a_restart(database_url, tmp_path, request):
    # A database of its own: the module's server (default policy) would re-arm the timer otherwise.
    admin = request.getfixturevalue("postgres_admin_url") if database_url.startswith("postgresql") else None
    url = new_database_url("postgresql" if admin else "sqlite", tmp_path, admin)
    try:
        _settle_across_restart(url, tmp_path)
    finally:
        drop_database(url, admin)


def _settle_across_restart(database_url, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "quick.toml").write_text(
        '[[policy]]\nname = "quick settle"\n'
        '[policy.complete_when]\nany_of = [{expected_set_available = true}, '
        '{all_of = [{expected_set_known = false}, {settled = 1}]}]\n')
    settings = test_settings(database_url, policies=str(policies))
    first = App(settings)
    first.start()
    study = Study()
    uid = create_incomplete(first.dicom.port, study, subscribe=False)
    study.ian(first.dicom.port, next(iter(study.series)))
    assert readiness(first.dicom.port, uid)[0] == "INCOMPLETE"
    first.stop()  # the timer is due while no server runs
    due = time.monotonic() + 1.5
    while time.monotonic() < due:
        time.sleep(0.1)
    second = App(settings)
    second.start()
    try:
        deadline = time.monotonic() + 10
        while readiness(second.dicom.port, uid)[0] != "READY" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readiness(second.dicom.port, uid) == ("READY", set(study.series[next(iter(study.series))]))
    finally:
        second.stop()


def test_explain_and_study_say_why(app, database_url, tmp_path):
    import subprocess
    import sys
    port, study = app.dicom.port, Study()
    uid = create_incomplete(port, study)
    study.mpps(port)
    study.ian(port, next(iter(study.series)))
    config = tmp_path / "cli.toml"
    config.write_text(f'database_url = "{database_url}"\n')

    def wfm(*args):
        result = subprocess.run([sys.executable, "-m", "workflow", *args, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    why = json.loads(wfm("explain", uid, "--json"))
    assert why["policy"] == "default" and why["input_readiness_state"] == "INCOMPLETE"
    assert len(why["expected"]) == 6 and len(why["available"]) == 2 and len(why["missing"]) == 4
    assert "missing" in wfm("explain", uid)
    assert "No template is enabled" in wfm("explain", "--study", study.uid)
    for args, status, message in ((["--study", "1.2.3.999"], 1, "unknown study: 1.2.3.999"),
                                  ([], 2, "give a workitem UID or --study"), ([uid, "--study", study.uid], 2, "one of them")):
        result = subprocess.run([sys.executable, "-m", "workflow", "explain", *args, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, message in result.stderr) == (status, True), result.stderr
    shown = json.loads(wfm("study", study.uid, "--json"))
    assert shown["performed_steps"][0]["status"] == "COMPLETED"
    assert shown["workitems"] == [{"sop_instance_uid": uid, "procedure_step_state": "SCHEDULED",
                                   "input_readiness_state": "INCOMPLETE", "procedure_step_label": "CT head review"}]


TEMPLATES = """
[[template]]
name = "ct-review"
conditions = { calling_ae_titles = ["ARCHIVE"], modalities = ["CT"] }
[template.creates]
scheduled_workitem_code = { value = "110005", scheme = "DCM", meaning = "Interpretation" }
procedure_step_label = "CT review"
priority = "HIGH"
worklist_label = "AUTO"

[[template]]
name = "mr-review"
conditions = { modalities = ["MR"] }
[template.creates]
scheduled_workitem_code = { value = "110005", scheme = "DCM", meaning = "Interpretation" }
procedure_step_label = "MR review"
worklist_label = "AUTO-MR"
"""


def test_a_ct_template_fires_from_ians_alone_once_per_study(database_url, tmp_path, request, caplog):
    """No MPPS names the modality: the CT Image Storage instances the IANs announce imply CT."""
    caplog.set_level(logging.DEBUG, logger="workflow.readiness")
    admin = request.getfixturevalue("postgres_admin_url") if database_url.startswith("postgresql") else None
    url = new_database_url("postgresql" if admin else "sqlite", tmp_path, admin)
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = (__import__("pathlib").Path(__file__).resolve().parents[2] / "policies" / "default.toml").read_text()
    (policies / "default.toml").write_text(shipped)
    (policies / "templates.toml").write_text(TEMPLATES)
    app = App(test_settings(url, policies=str(policies)))
    app.start()
    try:
        port, study = app.dicom.port, Study()
        study.ian(port, next(iter(study.series)))  # CT Image Storage instances, no MPPS
        evaluated(app)
        with ups_association(port) as assoc:
            def found(label: str) -> list[Dataset]:
                return [ds for status, ds in assoc.send_c_find(_label_query(label), PULL) if status.Status == 0xFF00]

            [created] = found("AUTO")
            assert found("AUTO-MR") == []
            [fired] = [r for r in caplog.records if r.getMessage().startswith("template 'ct-review' created")]
            assert (fired.levelname, fired.sop_instance, fired.study_instance_uid, fired.calling_ae) == (
                "INFO", created.SOPInstanceUID, study.uid, "ARCHIVE")
            assert "modality ['CT'] (implied by the SOP classes of its instances) is in ['CT']" in fired.reason
            not_fired = [r for r in caplog.records if r.getMessage().startswith("template 'mr-review' did not fire")]
            assert not_fired and not_fired[0].levelname == "DEBUG"
            assert not_fired[0].reason == ("modality ['CT'] (implied by the SOP classes of its instances) "
                                           "not in ['MR']")
            why = json.loads(_explain_study(url, policies, study.uid, "--json"))
            assert (why["facts"]["modalities"], why["facts"]["modality_source"]) == (
                ["CT"], "implied by the SOP classes of its instances")
            assert [(t["template"], t["outcome"], t["failed"]) for t in why["templates"]] == [
                ("ct-review", "created", []), ("mr-review", "does not fire", ["modalities"])]
            study.mpps(port)
            for series in list(study.series)[1:]:
                study.ian(port, series)
            study.ian(port, next(iter(study.series)))  # again: still one workitem
            evaluated(app)
            assert [ds.SOPInstanceUID for ds in found("AUTO")] == [created.SOPInstanceUID]
        assert created.ProcedureStepLabel == "CT review" and created.ScheduledProcedureStepPriority == "HIGH"
        assert created.StudyInstanceUID == study.uid
        assert readiness(port, created.SOPInstanceUID) == ("READY", study.all())
        why = json.loads(_explain_study(url, policies, study.uid, "--json"))
        assert why["facts"]["modality_source"] == "named by the study's MPPS"  # it came later
        ct, mr = why["templates"]
        assert (ct["outcome"], ct["workitem_uid"], ct["procedure_step_state"]) == (
            "created", created.SOPInstanceUID, "SCHEDULED")
        assert (mr["outcome"], mr["workitem_uid"], mr["failed"]) == ("does not fire", None, ["modalities"])
        [condition] = mr["conditions"]
        assert (condition["held"], condition["wanted"], condition["found"]) == (False, ["MR"], ["CT"])
        text = _explain_study(url, policies, study.uid)
        assert (f"Template ct-review ({policies / 'templates.toml'}: template[0]): created workitem "
                f"{created.SOPInstanceUID} (SCHEDULED)") in text
        assert "FAILS: modalities: modality ['CT'] (named by the study's MPPS) not in ['MR']" in text
    finally:
        app.stop()
        drop_database(url, admin)


def _explain_study(url: str, policies, study_uid: str, *args: str) -> str:
    """`wfm explain --study` as an operator runs it, against the test's database and policies."""
    import subprocess
    import sys

    config = policies.parent / "cli.toml"
    config.write_text(f'database_url = "{url}"\npolicies = "{policies}"\n')
    result = subprocess.run([sys.executable, "-m", "workflow", "explain", "--study", study_uid, *args,
                             "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _label_query(label: str) -> Dataset:
    identifier = Dataset()
    identifier.WorklistLabel = label
    identifier.SOPInstanceUID = None
    identifier.ProcedureStepLabel = None
    identifier.ScheduledProcedureStepPriority = None
    identifier.StudyInstanceUID = None
    return identifier


def test_find_returns_the_assembled_input_information(app):
    port, study = app.dicom.port, Study()
    study.mpps(port)
    for series in study.series:
        study.ian(port, series)
    uid = create_incomplete(port, study)
    identifier = Dataset()
    identifier.SOPInstanceUID = uid
    identifier.InputReadinessState = None
    identifier.InputInformationSequence = []
    with ups_association(port) as assoc:
        results = [(status.Status, ds) for status, ds in assoc.send_c_find(identifier, PULL)]
    assert [s for s, _ in results] == [0xFF00, 0x0000]
    found = results[0][1]
    assert found.InputReadinessState == "READY"
    assert {ref.ReferencedSOPInstanceUID for item in found.InputInformationSequence
            for ref in item.ReferencedSOPSequence} == study.all()


def _request(study_uid: str, accession: str) -> Dataset:
    item = Dataset()
    item.StudyInstanceUID, item.AccessionNumber, item.RequestedProcedureID = study_uid, accession, "RP1"
    item.IssuerOfAccessionNumberSequence = item.ReferencedStudySequence = []
    item.OrderPlacerIdentifierSequence = item.OrderFillerIdentifierSequence = []
    item.RequestedProcedureCodeSequence = item.ReasonForRequestedProcedureCodeSequence = []
    item.RequestedProcedureDescription = item.ReasonForTheRequestedProcedure = None
    return item


def test_accession_number_links_a_workitem_scheduled_for_another_study_uid(database_url, tmp_path, request):
    """The modality made its own Study Instance UID: the workitem names the scheduled one, the MPPS and
    IANs the acquired one, and the Accession Number (through the MPPS) joins them, as a site's policy
    with link_by_accession_number says."""
    admin = request.getfixturevalue("postgres_admin_url") if database_url.startswith("postgresql") else None
    url = new_database_url("postgresql" if admin else "sqlite", tmp_path, admin)
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = (__import__("pathlib").Path(__file__).resolve().parents[2] / "policies" / "default.toml").read_text()
    (policies / "default.toml").write_text(shipped.replace("link_by_accession_number = false",
                                                           "link_by_accession_number = true"))
    app = App(test_settings(url, policies=str(policies)))
    app.start()
    try:
        port, acquired, scheduled_uid = app.dicom.port, Study(), generate_uid()
        unrelated = create_incomplete(port, Study(), subscribe=False)
        uid = generate_uid()
        ds = workitem(StudyInstanceUID=scheduled_uid, InputReadinessState="INCOMPLETE",
                      ReferencedRequestSequence=[_request(scheduled_uid, "ACC-77")])
        with ups_association(port) as assoc:
            assert assoc.send_n_create(ds, PUSH, uid)[0].Status in (0x0000, 0xB300)
        ae = NoDelayAE(ae_title="CT1")
        ae.add_requested_context(MPPS)
        assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
        mpps_uid = generate_uid()
        assert assoc.send_n_create(in_progress(acquired.uid, accession="ACC-77"), MPPS, mpps_uid)[0].Status == 0
        assert assoc.send_n_set(completed(acquired.series), MPPS, mpps_uid)[0].Status == 0
        assoc.release()
        for series in acquired.series:
            acquired.ian(port, series)
        assert ready_soon(port, uid) == ("READY", acquired.all())
        evaluated(app)
        assert readiness(port, unrelated) == ("INCOMPLETE", set())
    finally:
        app.stop()
        drop_database(url, admin)
