"""`wfm ups create|claim|complete|cancel` and `wfm mpps send` run as a user runs them, against a real
wfm server over real associations; what the server then holds is read back by N-GET or from its
database. And each against nothing listening."""

from __future__ import annotations

import json

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from testkit.cli import one_line_error, wfm
from testkit.ups import claim, free_port, get, ups_association, workitem
from workflow.demo.modality import image, SECONDARY_CAPTURE
from workflow.mpps.tables import PerformedStep, PerformedStepInstance
from workflow.store.engine import reading

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    """SQLite only: these tools talk DICOM, the database behind the server does not change them."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'wfm.db'}"


@pytest.fixture
def tool(server, tmp_path):
    """Run `wfm ARGS --port <server>` with a private state folder for Transaction UIDs."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}

    def run(*args: str):
        return wfm(*args, "--port", str(server.dicom.port), env=env)
    run.state_file = tmp_path / "state" / "wfm" / "transactions.json"
    return run


def n_get(server, uid: str, *keywords: str):
    with ups_association(server.dicom.port) as assoc:
        status, ds = get(assoc, uid, *keywords)
    assert status.Status == 0, f"N-GET {uid}: 0x{status.Status:04X}"
    return ds


def test_create_from_flags(server, tool):
    study_uid = generate_uid()
    done = tool("ups", "create", "--patient-name", "Doe^Jane", "--patient-id", "P7", "--study-uid", study_uid,
                "--accession", "ACC7", "--start", "2026-12-05T14:30+01:00", "--priority", "HIGH",
                "--label", "Read the CT", "--worklist-label", "READING", "--station", "RR1^99LOCAL^Reading room 1",
                "--workitem-code", "110005^DCM^Interpretation", "--readiness", "READY")
    assert done.returncode == 0, done.stderr
    uid = done.stdout.strip()
    assert f"UPS N-CREATE {uid}: 0x0000 Success" in done.stderr
    ds = n_get(server, uid, "PatientName", "PatientID", "StudyInstanceUID", "ReferencedRequestSequence",
               "ScheduledProcedureStepStartDateTime", "ScheduledProcedureStepPriority", "ProcedureStepLabel",
               "WorklistLabel", "ScheduledStationNameCodeSequence", "ScheduledWorkitemCodeSequence",
               "InputReadinessState", "ProcedureStepState")
    assert (str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID) == ("Doe^Jane", "P7", study_uid)
    assert (ds.ReferencedRequestSequence[0].AccessionNumber, ds.ReferencedRequestSequence[0].StudyInstanceUID) == (
        "ACC7", study_uid)
    assert ds.ScheduledProcedureStepStartDateTime == "20261205143000+0100"
    assert (ds.ScheduledProcedureStepPriority, ds.ProcedureStepLabel, ds.WorklistLabel) == ("HIGH", "Read the CT",
                                                                                              "READING")
    station = ds.ScheduledStationNameCodeSequence[0]
    assert (station.CodeValue, station.CodingSchemeDesignator, station.CodeMeaning) == ("RR1", "99LOCAL",
                                                                                        "Reading room 1")
    assert ds.ScheduledWorkitemCodeSequence[0].CodeValue == "110005"
    assert (ds.InputReadinessState, ds.ProcedureStepState) == ("READY", "SCHEDULED")


def test_text_beyond_ascii_goes_out_declared(server, tool, tmp_path):
    """A name or label beyond ISO 8859-1, from flags or a DICOM JSON file (which names no character set),
    is sent in ISO_IR 192 and stored as typed: pydicom had written "?" for it under no declared set."""
    done = tool("ups", "create", "--patient-name", "Müller^Jürgen", "--label", "Kontrolle 患者")
    assert done.returncode == 0, done.stderr
    ds = n_get(server, done.stdout.strip(), "PatientName", "ProcedureStepLabel")
    assert (str(ds.PatientName), ds.ProcedureStepLabel) == ("Müller^Jürgen", "Kontrolle 患者")
    path = tmp_path / "workitem.json"
    item = workitem(PatientID="JSON2").to_json_dict()
    item["00741204"] = {"vr": "LO", "Value": ["Lecture – 読影"]}
    path.write_text(json.dumps(item, ensure_ascii=False), encoding="utf-8")
    done = tool("ups", "create", "--file", str(path))
    assert done.returncode == 0, done.stderr
    assert n_get(server, done.stdout.strip(), "ProcedureStepLabel").ProcedureStepLabel == "Lecture – 読影"


def test_create_from_toml_with_flags_over_it(server, tool, tmp_path):
    path = tmp_path / "workitem.toml"
    path.write_text("""
PatientName = "Roe^Richard"
PatientID = "FROMFILE"
ProcedureStepLabel = "From a file"
ScheduledProcedureStepStartDateTime = 2026-12-07T08:00:00
[[ScheduledWorkitemCodeSequence]]
CodeValue = "110005"
CodingSchemeDesignator = "DCM"
CodeMeaning = "Interpretation"
""")
    done = tool("ups", "create", "--file", str(path), "--patient-id", "FROMFLAG")
    assert done.returncode == 0, done.stderr
    ds = n_get(server, done.stdout.strip(), "PatientName", "PatientID", "ProcedureStepLabel",
               "ScheduledProcedureStepStartDateTime", "ScheduledWorkitemCodeSequence")
    assert (str(ds.PatientName), ds.PatientID, ds.ProcedureStepLabel) == ("Roe^Richard", "FROMFLAG", "From a file")
    assert ds.ScheduledProcedureStepStartDateTime == "20261207080000"
    assert ds.ScheduledWorkitemCodeSequence[0].CodeMeaning == "Interpretation"


def test_create_from_dicom_json_missing_type2_attributes(server, tool, tmp_path):
    ds = workitem(PatientID="JSON1", IssuerOfPatientID=..., AdmissionID=..., OtherPatientIDsSequence=...)
    path = tmp_path / "workitem.json"
    path.write_text(json.dumps(ds.to_json_dict()))
    done = tool("ups", "create", "--file", str(path))
    assert done.returncode == 0, done.stderr
    assert "0x0000 Success" in done.stderr  # the tool filled the Type 2 attributes the file left out
    assert n_get(server, done.stdout.strip(), "PatientID").PatientID == "JSON1"


@pytest.mark.parametrize("content, key", [
    ('PatientNam = "x"\n', "PatientNam"),
    ('ScheduledWorkitemCodeSequence = "110005"\n', "ScheduledWorkitemCodeSequence"),
    ('[[ScheduledWorkitemCodeSequence]]\nCodeValu = "1"\n', "ScheduledWorkitemCodeSequence[0].CodeValu"),
])
def test_create_from_a_bad_file_says_file_and_key(tool, tmp_path, content, key):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    done = tool("ups", "create", "--file", str(path))
    assert done.returncode == 1
    assert one_line_error(done).startswith(f"wfm ups create: {path}: key '{key}': ")


def test_create_with_a_bad_start_says_so(tool):
    done = tool("ups", "create", "--start", "tomorrow")
    assert done.returncode == 1
    assert "'tomorrow' is not a date and time" in one_line_error(done)


def test_claim_then_complete(server, tool):
    uid = tool("ups", "create", "--station", "CT9", "--workitem-code", "110005^DCM^Interpretation").stdout.strip()
    claimed = tool("ups", "claim", uid)
    assert claimed.returncode == 0, claimed.stderr
    transaction_uid = claimed.stdout.strip()
    assert f"UPS N-ACTION IN PROGRESS {uid}: 0x0000 Success" in claimed.stderr
    assert json.loads(tool.state_file.read_text())[uid]["transaction_uid"] == transaction_uid
    assert str(tool.state_file) in claimed.stderr
    assert n_get(server, uid, "ProcedureStepState").ProcedureStepState == "IN PROGRESS"

    done = tool("ups", "complete", uid, "--performer", "Reader^Rita")
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == [
        f"UPS N-GET {uid}", f"UPS N-SET {uid}", f"UPS N-ACTION COMPLETED {uid}"]
    ds = n_get(server, uid, "ProcedureStepState", "UnifiedProcedureStepPerformedProcedureSequence")
    assert ds.ProcedureStepState == "COMPLETED"
    performed = ds.UnifiedProcedureStepPerformedProcedureSequence[0]
    assert performed.PerformedStationNameCodeSequence[0].CodeValue == "CT9"  # the scheduled station
    assert performed.PerformedWorkitemCodeSequence[0].CodeValue == "110005"
    assert str(performed.ActualHumanPerformersSequence[0].HumanPerformerName) == "Reader^Rita"
    assert uid not in json.loads(tool.state_file.read_text())


def test_complete_without_a_transaction_uid(tool):
    uid = tool("ups", "create").stdout.strip()
    done = tool("ups", "complete", uid)
    assert done.returncode == 1
    assert one_line_error(done).startswith(f"wfm ups complete: no Transaction UID for {uid}")


def test_a_refused_request_exits_3_with_its_status(tool):
    done = tool("ups", "claim", "1.2.3.4.404")
    assert done.returncode == 3
    assert "UPS N-ACTION IN PROGRESS 1.2.3.4.404: 0xC307 Failure" in done.stderr
    assert "Traceback" not in done.stderr


def test_cancel_own_claimed_workitem(server, tool):
    uid = tool("ups", "create").stdout.strip()
    assert tool("ups", "claim", uid).returncode == 0
    done = tool("ups", "cancel", uid, "--reason", "scanner broke")
    assert done.returncode == 0, done.stderr
    assert f"UPS N-ACTION CANCELED {uid}: 0x0000 Success" in done.stderr
    ds = n_get(server, uid, "ProcedureStepState", "ProcedureStepProgressInformationSequence")
    assert ds.ProcedureStepState == "CANCELED"
    progress = ds.ProcedureStepProgressInformationSequence[0]
    assert progress.ReasonForCancellation == "scanner broke"
    assert progress.ProcedureStepDiscontinuationReasonCodeSequence[0].CodeValue == "110513"


def test_cancel_someone_elses_workitem_is_a_request(server, tool):
    uid = tool("ups", "create").stdout.strip()
    with ups_association(server.dicom.port, calling_ae="PERFORMER") as assoc:
        assert claim(assoc, uid)[0].Status == 0
    done = tool("ups", "cancel", uid, "--reason", "wrong patient")
    assert done.returncode == 0, done.stderr
    assert f"UPS N-ACTION request cancel {uid}: 0x0000 Success" in done.stderr
    assert "only if its performer agrees" in done.stderr
    assert n_get(server, uid, "ProcedureStepState").ProcedureStepState == "IN PROGRESS"

    scheduled = tool("ups", "create").stdout.strip()
    assert tool("ups", "cancel", scheduled).returncode == 0
    assert n_get(server, scheduled, "ProcedureStepState").ProcedureStepState == "CANCELED"


def test_mpps_send_names_every_series_and_instance(server, tool, tmp_path):
    study_uid, ct_series, sc_series = generate_uid(), generate_uid(), generate_uid()
    made = [(ct_series, image(tmp_path, study_uid, ct_series, n)) for n in (1, 2, 3)]
    made.append((sc_series, image(tmp_path, study_uid, sc_series, 1, sop_class=SECONDARY_CAPTURE, modality="OT",
                                  series_number=2)))
    (tmp_path / "notes.txt").write_text("not DICOM")
    done = tool("mpps", "send", str(tmp_path), "--station-ae", "CT9")
    assert done.returncode == 0, done.stderr
    uid = done.stdout.strip()
    assert f"MPPS N-CREATE {uid}: 0x0000 Success" in done.stderr
    assert f"MPPS N-SET COMPLETED {uid}: 0x0000 Success" in done.stderr
    with reading(server.engine) as conn:
        step = conn.execute(select(PerformedStep).where(PerformedStep.sop_instance_uid == uid)).one()
        expected = conn.execute(select(PerformedStepInstance.series_instance_uid, PerformedStepInstance.sop_instance_uid)
                                .where(PerformedStepInstance.performed_step_uid == uid)).all()
    assert (step.status, step.calling_ae_title) == ("COMPLETED", "WFMSCU")
    assert json.loads(step.dataset_json)["00400241"]["Value"] == ["CT9"]
    assert sorted(expected) == sorted((series, path.stem) for series, path in made)  # files are <SOP UID>.dcm


def test_mpps_send_without_dicom_files(tool, tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    done = tool("mpps", "send", str(tmp_path))
    assert done.returncode == 1
    assert "no DICOM instances found" in done.stderr


@pytest.mark.parametrize("command", [
    ["ups", "create"], ["ups", "claim", "1.2.3"], ["ups", "complete", "1.2.3", "--transaction-uid", "1.2.4"],
    ["ups", "cancel", "1.2.3"], ["mpps", "send", "FILES"], ["ian", "send", "FILES", "--retrieve-ae", "PACS"],
])
def test_nothing_listening(command, tmp_path):
    image(tmp_path, generate_uid(), generate_uid(), 1)
    port = free_port()
    done = wfm(*[str(tmp_path) if part == "FILES" else part for part in command], "--port", str(port))
    assert done.returncode == 2
    assert f"connection refused: nothing accepts connections at 127.0.0.1:{port}" in one_line_error(done)


def test_help_shows_the_defaults():
    for command in (["ups", "create"], ["ups", "claim"], ["ups", "complete"], ["ups", "cancel"], ["mpps", "send"]):
        text = " ".join(wfm(*command, "--help").stdout.split())
        assert "(default: 127.0.0.1)" in text and "(default: 11112)" in text and "(default: WFM)" in text, command
