#!/usr/bin/env python3
"""Readiness at scale: is the cost per instance flat? A large study (10,000 instances) arrives as
1,000 IANs of 10 instances while three workitems watch it, against a small study (1,000 instances,
100 IANs) on the same server in the same run. Time = from the first IAN sent to all three workitems
READY (the shipped default policy: the study's COMPLETED MPPS lists every instance; the MPPS and the
workitems are sent before the clock starts). Target: large / small <= 11. Then N-GET of a whole
workitem with 10,000 input instances: target <= 1 s (the 1,000-input N-GET is printed beside it).

Each backend runs twice in the same run, on a server of its own: passes reading the whole study
(WFM_READINESS_FULL=1, as before issue 16) and incremental passes (the default). The server's CPU
time is sampled at every tenth of the IANs sent: the "whole study" line gives the CPU per instance of
the small and of the large study, each up to all READY, and their ratio (flat: 1, the large study's
instances cost no more than the small one's); the "tenths" line gives the CPU per instance of the
first and of the last tenth of the large study (the last one up to all READY, so it carries the
passes still to come) and their ratio. The first tenth carries no pass of the worker (the first
comes after `readiness_max_wait`), only the IANs, so that ratio exceeds 1 by the passes' share even
when nothing grows with the study; every tenth is printed too.

    python bench/readiness.py                 # full size, by hand (~2 min a backend and mode)
    python bench/readiness.py --smoke         # tiny, to keep the script working (the test suite runs it)
    python bench/readiness.py --large 200000 --small 2000 --backend sqlite --modes incremental
    python bench/readiness.py --uids serial   # UIDs as a modality numbers them (random by default; see Study)

`wfm serve` runs in its own process with its shipped defaults (SQLite WAL with synchronous=FULL,
readiness_delay 0.2 s); IANs go over one association from a raw replay client (bench/rawscu.py),
pre-encoded; READY is observed by reading the workitem table (read-only) every 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (InstanceAvailabilityNotification, ModalityPerformedProcedureStep,
                                  UnifiedProcedureStepPush)
from sqlalchemy import create_engine, select

from ian_ingest import free_port, postgres_database, wait_listening
from rawscu import RawAssociation
from workflow.dimse.nodelay import NoDelayAE
from workflow.ups.tables import Workitem

CT = "1.2.840.10008.5.1.4.1.1.2"
PER_IAN, PER_SERIES = 10, 100


UID_KINDS = ("random", "serial")


class Study:
    """`uids`: "random", every UID drawn apart (pydicom's generate_uid), so an index's new entries land
    anywhere in it; or "serial", as a modality numbers them: one root per study, series and instances
    counted under it, so a study's new index entries sit side by side."""

    def __init__(self, instances: int, uids: str = "random") -> None:
        count = max(1, instances // PER_SERIES)
        if uids == "serial":
            self.uid = generate_uid(prefix=None)  # 2.25.<UUID>: <= 44 characters, room for the counters
            series = [f"{self.uid}.{n}" for n in range(1, count + 1)]
        else:
            self.uid = generate_uid()
            series = [generate_uid() for _ in range(count)]
        self.series: dict[str, list[str]] = {s: [] for s in series}
        for i in range(instances):
            sops = self.series[series[i % len(series)]]
            sops.append(f"{series[i % len(series)]}.{len(sops) + 1}" if uids == "serial" else generate_uid())
        self.size = instances

    def ians(self) -> list[bytes]:
        """IANs of PER_IAN instances of one series each, encoded before the clock starts."""
        return [encode(ds, True, True) for ds in self.ian_datasets()]

    def ian_datasets(self):
        for series_uid, sops in self.series.items():
            for at in range(0, len(sops), PER_IAN):
                ds = Dataset()
                ds.ReferencedPerformedProcedureStepSequence = []
                ds.StudyInstanceUID = self.uid
                item = Dataset()
                item.SeriesInstanceUID = series_uid
                item.ReferencedSOPSequence = [_ref(sop) for sop in sops[at:at + PER_IAN]]
                ds.ReferencedSeriesSequence = [item]
                yield ds


def _ref(sop: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT
    ref.ReferencedSOPInstanceUID = sop
    ref.InstanceAvailability = "ONLINE"
    ref.RetrieveAETitle = "PACS"
    return ref


def _mpps(study: Study) -> tuple[Dataset, Dataset]:
    create = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study.uid
    step.ReferencedStudySequence = []
    step.AccessionNumber = "A1"
    step.RequestedProcedureID = step.ScheduledProcedureStepID = "1"
    step.RequestedProcedureDescription = step.ScheduledProcedureStepDescription = "CT"
    step.ScheduledProtocolCodeSequence = []
    create.ScheduledStepAttributesSequence = [step]
    create.PatientName, create.PatientID, create.PatientBirthDate, create.PatientSex = "Bench^B", "B1", "", ""
    create.ReferencedPatientSequence = []
    create.PerformedProcedureStepID, create.PerformedStationAETitle = "1", "CT1"
    create.PerformedStationName = create.PerformedLocation = ""
    create.PerformedProcedureStepStartDate, create.PerformedProcedureStepStartTime = "20261123", "090000"
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    create.PerformedProcedureStepDescription = create.PerformedProcedureTypeDescription = ""
    create.ProcedureCodeSequence = []
    create.PerformedProcedureStepEndDate = create.PerformedProcedureStepEndTime = None
    create.Modality, create.StudyID = "CT", "1"
    create.PerformedProtocolCodeSequence = create.PerformedSeriesSequence = []
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate, done.PerformedProcedureStepEndTime = "20261123", "091500"
    done.PerformedSeriesSequence = []
    for series_uid, sops in study.series.items():
        item = Dataset()
        item.PerformingPhysicianName = item.OperatorsName = item.SeriesDescription = item.RetrieveAETitle = ""
        item.ProtocolName = "CT"
        item.SeriesInstanceUID = series_uid
        item.ReferencedImageSequence = [_image(sop) for sop in sops]
        item.ReferencedNonImageCompositeSOPInstanceSequence = []
        done.PerformedSeriesSequence.append(item)
    return create, done


def _image(sop: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT, sop
    return ref


def _workitem(study_uid: str) -> Dataset:
    """An N-CREATE data set with every Type 1 and Type 2 attribute of PS3.4 Table CC.2.5-3."""
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "110005", "DCM", "Interpretation"
    ds = Dataset()
    ds.TransactionUID = None
    ds.ScheduledProcedureStepPriority, ds.ProcedureStepLabel, ds.WorklistLabel = "MEDIUM", "Read", "BENCH"
    ds.ScheduledStationNameCodeSequence = ds.ScheduledStationClassCodeSequence = []
    ds.ScheduledStationGeographicLocationCodeSequence = []
    ds.ScheduledProcedureStepStartDateTime = "20261123090000"
    ds.ScheduledWorkitemCodeSequence = [code]
    ds.InputReadinessState = "INCOMPLETE"
    ds.InputInformationSequence = ds.ScheduledProcessingParametersSequence = []
    ds.StudyInstanceUID = study_uid
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^B", "B1", "", ""
    for keyword in ("CommentsOnTheScheduledProcedureStep", "IssuerOfPatientID", "AdmissionID",
                    "AdmittingDiagnosesDescription"):
        setattr(ds, keyword, None)
    for keyword in ("IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence", "IssuerOfAdmissionIDSequence",
                    "AdmittingDiagnosesCodeSequence", "ReferencedRequestSequence",
                    "ProcedureStepProgressInformationSequence", "UnifiedProcedureStepPerformedProcedureSequence"):
        setattr(ds, keyword, [])
    ds.ProcedureStepState = "SCHEDULED"
    return ds


def _client() -> NoDelayAE:
    ae = NoDelayAE(ae_title="BENCH")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 300
    for cls in (ModalityPerformedProcedureStep, UnifiedProcedureStepPush):
        ae.add_requested_context(cls)
    return ae


def prepare(port: int, study: Study) -> list[str]:
    """The COMPLETED MPPS (the expected set) and three INCOMPLETE workitems for the study."""
    assoc = _client().associate("127.0.0.1", port, ae_title="WFM")
    create, done = _mpps(study)
    mpps_uid = generate_uid()
    assert assoc.send_n_create(create, ModalityPerformedProcedureStep, mpps_uid)[0].Status == 0
    assert assoc.send_n_set(done, ModalityPerformedProcedureStep, mpps_uid)[0].Status == 0
    uids = [generate_uid() for _ in range(3)]
    for uid in uids:
        status, _ = assoc.send_n_create(_workitem(study.uid), UnifiedProcedureStepPush, uid)
        assert status.Status in (0x0000, 0xB300), f"N-CREATE 0x{status.Status:04X}"
    assoc.release()
    return uids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_ready(port: int, url: str, study: Study, workitems: list[str],
                  pid: int | None = None) -> tuple[float, float, list[float]]:
    """Seconds from the first IAN to all workitems READY, the part spent sending the IANs, and the
    server's CPU seconds in each tenth of the IANs (the last up to READY; empty without `pid`)."""
    ians = study.ians()
    engine = create_engine(url)
    query = select(Workitem.sop_instance_uid).where(Workitem.sop_instance_uid.in_(workitems),
                                                     Workitem.input_readiness_state == "READY")
    marks = {len(ians) * k // 10 for k in range(1, 10)}
    cpu = [cpu_seconds(pid)] if pid else []
    start = time.perf_counter()
    with RawAssociation("127.0.0.1", port, "WFM", "ARCHIVE", str(InstanceAvailabilityNotification),
                        str(ImplicitVRLittleEndian), timeout=300) as assoc:
        for n, encoded in enumerate(ians, 1):
            status = assoc.n_create(str(InstanceAvailabilityNotification), generate_uid(), encoded)
            if status != 0:
                raise RuntimeError(f"IAN refused with status 0x{status:04X}")
            if pid and n in marks:
                cpu.append(cpu_seconds(pid))
    sent = time.perf_counter() - start
    while True:
        with engine.connect() as conn:
            if len(conn.execute(query).all()) == len(workitems):
                break
        if time.perf_counter() - start > 3600:
            raise TimeoutError("workitems never became READY")
        time.sleep(0.02)
    if pid:
        cpu.append(cpu_seconds(pid))
    engine.dispose()
    return time.perf_counter() - start, sent, [b - a for a, b in zip(cpu, cpu[1:])]


def n_get_seconds(port: int, uid: str, expected_inputs: int, repeats: int = 5) -> float:
    """Median seconds of an N-GET of the whole workitem (every attribute), response decoded."""
    assoc = _client().associate("127.0.0.1", port, ae_title="WFM")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        status, ds = assoc.send_n_get([], UnifiedProcedureStepPush, uid)
        listed = sum(len(item.ReferencedSOPSequence) for item in ds.InputInformationSequence)
        times.append(time.perf_counter() - start)
        assert status.Status == 0 and listed == expected_inputs, (status.Status, listed)
    assoc.release()
    return statistics.median(times)


def run_backend(name: str, url: str, small: int, large: int, mode: str, uids: str = "random") -> list[tuple]:
    port = free_port()
    env = {**os.environ, "WFM_DATABASE_URL": url, "WFM_HOST": "127.0.0.1", "WFM_PORT": str(port),
           "WFM_LOG_LEVEL": "WARNING", "WFM_HTTP_PORT": "0",  # HTTP off: its default port may be taken
           "WFM_READINESS_FULL": "1" if mode == "full" else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "workflow", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_listening(port, proc)
        measured = {}
        for size in (small, large):
            study = Study(size, uids)
            workitems = prepare(port, study)
            total, sent, tenths = time_to_ready(port, url, study, workitems, proc.pid)
            measured[size] = (total, workitems[0], sum(tenths) / size * 1000)
            rows.append((name, f"{size} instances, {size // PER_IAN} IANs", mode, total, sent,
                         total / measured[small][0]))
            if size == large:
                per = size / 10 / 1000  # thousands of instances in a tenth
                first, last = tenths[0] / per, tenths[-1] / per
                rows.append((name, "tenths, CPU s/1000 inst.", mode, first, last, last / first if first else None))
                rows.append((name, "by tenth", mode, [t / per for t in tenths], None, None))
                rows.append((name, "whole study, CPU s/1000 inst.", mode, measured[small][2], measured[large][2],
                             measured[large][2] / measured[small][2] if measured[small][2] else None))
        for size in (small, large):
            seconds = n_get_seconds(port, measured[size][1], size)
            rows.append((name, f"N-GET, {size} inputs", mode, seconds, None, None))
    finally:
        proc.terminate()
        proc.wait(60)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--modes", default="full,incremental",
                        help="full (every pass reads the whole study), incremental, or both (the default)")
    parser.add_argument("--uids", choices=UID_KINDS, default="random",
                        help="random UIDs (the default), or serial ones as a modality numbers them (see Study)")
    args = parser.parse_args()
    small, large = (20, 200) if args.smoke else (args.small, args.large)
    modes = [m for m in args.modes.split(",") if m in ("full", "incremental")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            if args.backend in ("sqlite", "both"):
                rows += run_backend("SQLite", f"sqlite:///{Path(tmp) / f'bench-{mode}.db'}", small, large, mode,
                                    args.uids)
            if args.backend in ("postgresql", "both") and not args.smoke:
                found = postgres_database()
                if found:
                    url, drop = found
                    try:
                        rows += run_backend("PostgreSQL", url, small, large, mode, args.uids)
                    finally:
                        drop()
    print(f"{'backend':<11} {'case':<28} {'mode':<11} {'seconds':>8} {'IANs sent':>9} {'vs small':>8}")
    for name, case, mode, seconds, sent, ratio in rows:
        if case == "by tenth":
            continue
        if case.startswith(("tenths", "whole")):  # first and last tenth (small and large study), their ratio
            print(f"{name:<11} {case:<28} {mode:<11} {seconds:>8.3f} {sent:>9.3f} "
                  f"{'' if ratio is None else f'{ratio:.2f}':>8}")
            continue
        print(f"{name:<11} {case:<28} {mode:<11} {seconds:>8.3f} {'' if sent is None else f'{sent:.3f}':>9} "
              f"{'' if ratio is None else f'{ratio:.2f}':>8}")
    print(f"{args.uids} UIDs; targets: large/small <= 11 (cost per instance flat); whole study: large/small "
          "CPU per instance <= 1.1 (flat); tenths: last/first (see the docstring: the first tenth has no pass); "
          "N-GET of 10,000 inputs <= 1 s (the client's pydicom decoding included)")
    for name, case, mode, tenths, _, _ in rows:
        if case == "by tenth":
            print(f"{name} {mode}, large study, CPU s/1000 instances by tenth: " + " ".join(f"{t:.3f}" for t in tenths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
