"""A small, known database for the console's tests and screenshots, made the way the server's data is
made: workitems by UPS N-CREATE and IANs by N-CREATE over DIMSE, a reconciliation run recorded as a run
records it (findings, counts, the report's SHA-256)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydicom.uid import generate_uid

from testkit.ian import association, instance_item, make_ian, send
from testkit.ups import claim, code, ups_association, workitem
from workflow.kernel.clock import utcnow
from workflow.reconcile import reports
from workflow.reconcile.rules.compare import Discrepancy, Reason, Tally

PUSH = "1.2.840.10008.5.1.4.34.6.1"


@dataclass
class Seeded:
    workitems: dict[str, str] = field(default_factory=dict)  # name -> uid
    study_uid: str = ""
    series: list[str] = field(default_factory=list)
    run_uid: str = ""
    other_study: str = ""
    missing: list[str] = field(default_factory=list)


# name: (label, worklist label, priority, patient name, patient ID, station, hours from today 00:00, accession)
WORKITEMS = {
    "ct_head": ("CT head review", "CT-NIGHT", "HIGH", "Smith^Anna", "PID100", "CT001", 9, "ACC100"),
    "mr_knee": ("MR knee review", "MR-DAY", "LOW", "Jones^Bob", "PID200", "MR002", 14, "ACC200"),
    "ct_chest": ("CT chest CAD", "CT-NIGHT", "MEDIUM", "Garcia^Maria", "PID300", "CT001", 11, "ACC300"),
    "us_abdomen": ("US abdomen review", "US-DAY", "MEDIUM", "Miller^Lars", "PID400", "US003", 10, "ACC400"),
    "xr_wrist": ("XR wrist review", "XR-DAY", "HIGH", "Davis^Emma", "PID500", "XR004", 8, "ACC500"),
}


# Earlier days' work, for the chart: canceled, or still IN PROGRESS (name: patient, station, days back, state)
HISTORY = {f"history_{n}": (patient, station, days, state) for n, (patient, station, days, state) in enumerate((
    ("Wilson^Noah", "NM007", 1, "IN PROGRESS"), ("Moore^Mia", "MG008", 2, "CANCELED"),
    ("Hall^Omar", "NM007", 2, "CANCELED"), ("King^Ines", "MG008", 3, "IN PROGRESS"),
    ("Young^Yuki", "NM007", 5, "CANCELED"), ("Green^Kofi", "MG008", 6, "CANCELED"),
    ("Baker^Chloe", "NM007", 8, "CANCELED"), ("Adams^Arjun", "MG008", 9, "CANCELED")))}


def seed(app) -> Seeded:
    out = Seeded(study_uid=generate_uid(), other_study=generate_uid())
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # The CT head study is known from IANs: two series at PACS, the second also NEARLINE at a vault.
    out.series = [generate_uid(), generate_uid()]
    first = [instance_item() for _ in range(3)]
    second = [instance_item() for _ in range(2)]
    with association(app.dicom.port, calling_ae="MODALITY") as assoc:
        assert send(assoc, make_ian(out.study_uid, {out.series[0]: first, out.series[1]: second}))[0].Status == 0
    vault = [instance_item(i.ReferencedSOPInstanceUID, availability="NEARLINE", ae=("VAULT",)) for i in second]
    with association(app.dicom.port, calling_ae="VAULT") as assoc:
        assert send(assoc, make_ian(out.study_uid, {out.series[1]: vault}))[0].Status == 0
    with ups_association(app.dicom.port) as assoc:
        for name, (label, wl, priority, patient, pid, station, hour, accession) in WORKITEMS.items():
            uid = generate_uid()
            start = (today + timedelta(hours=hour)).strftime("%Y%m%d%H%M%S")
            request = _request(out.study_uid if name == "ct_head" else generate_uid(), accession)
            ds = workitem(ProcedureStepLabel=label, WorklistLabel=wl, ScheduledProcedureStepPriority=priority,
                          PatientName=patient, PatientID=pid, ScheduledStationNameCodeSequence=[code(station)],
                          ScheduledProcedureStepStartDateTime=start, InputReadinessState="INCOMPLETE",
                          StudyInstanceUID=request.StudyInstanceUID, ReferencedRequestSequence=[request])
            assert assoc.send_n_create(ds, PUSH, uid)[0].Status == 0
            out.workitems[name] = uid
        for name, (patient, station, days, state) in HISTORY.items():
            uid = generate_uid()
            start = (today - timedelta(days=days, hours=-10)).strftime("%Y%m%d%H%M%S")
            ds = workitem(ProcedureStepLabel="NM review" if station.startswith("NM") else "MG review",
                          WorklistLabel=station[:2] + "-DAY", ScheduledProcedureStepPriority="LOW",
                          PatientName=patient, PatientID=f"PID9{len(out.workitems)}",
                          ScheduledStationNameCodeSequence=[code(station)], ScheduledProcedureStepStartDateTime=start,
                          InputReadinessState="INCOMPLETE")
            assert assoc.send_n_create(ds, PUSH, uid)[0].Status == 0
            if state == "IN PROGRESS":
                assert claim(assoc, uid)[0].Status == 0
            else:
                assert app.worklist.request_cancel(uid, {}, "SCHEDULER").status.code == 0
            out.workitems[name] = uid
    deadline = time.monotonic() + 15
    while app.readiness.pending():  # the readiness worker has settled the study
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # A finished reconciliation of PACS: three instances it lacks, one study it holds unannounced.
    out.missing = [i.ReferencedSOPInstanceUID for i in first]
    findings = [Discrepancy(Reason.MISSING_IN_ARCHIVE, out.study_uid, out.series[0], uid, "announced by IAN, not held")
                for uid in out.missing]
    findings.append(Discrepancy(Reason.UNEXPECTED_IN_ARCHIVE, out.other_study, None, None, "held, never announced"))
    with app.engine.begin() as conn:
        run_id, out.run_uid = reports.start_run(conn, archive_ae_title="PACS", archive_host="127.0.0.1",
                                                archive_port=104, method="query", scope={"days": 7},
                                                cutoff=utcnow())
        reports.record_findings(conn, run_id, findings)
        reports.finish_run(conn, run_id, Tally(by_reason=Counter(f.reason.value for f in findings),
                                              expected_checked=5, actual_seen=3, matched=2))
    return out


def _request(study_uid: str, accession: str):
    from pydicom.dataset import Dataset
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.AccessionNumber = accession
    item.RequestedProcedureID = "RP" + accession[3:]
    item.RequestedProcedureDescription = "review"
    item.RequestedProcedureCodeSequence = []
    item.IssuerOfAccessionNumberSequence = []
    item.ReferencedStudySequence = []
    item.RequestingPhysician = None
    item.RequestingService = None
    item.AdmissionID = None
    return item
