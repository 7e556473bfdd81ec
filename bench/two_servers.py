#!/usr/bin/env python3
"""Two `wfm serve` processes on one PostgreSQL behind one address (HAProxy in TCP mode, from Debian's
packages), driven by a load generator: N concurrent senders of IANs (each a new study) and UPS
workitems, at a target rate, with latencies recorded; optionally one server killed with SIGKILL halfway.

    python bench/two_servers.py                       # full size (run by hand)
    python bench/two_servers.py --smoke --kill --json # small, one server killed (the test suite runs it)

What it checks, from the database and a subscriber of its own, and prints beside the figures:
- every acknowledged IAN is stored once, with all its instances; every acknowledged workitem exists;
- each workitem's SCHEDULED State Report reaches the global subscriber, first arrivals in commit
  (outbox) order; duplicates are counted (none allowed without a kill: delivery is at least once, so a
  report acknowledged by the subscriber just before its sender died may come again);
- with --kill, the survivor carries on: the run completes through the same address.
It reports per-process CPU per IAN (user + system, from /proc) so the scale-out can be extrapolated
(docs/performance.md). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import InstanceAvailabilityNotification, UnifiedProcedureStepEvent, UnifiedProcedureStepPush

from ian_ingest import free_port, make_ian, postgres_database, wait_listening
from workflow.dimse.nodelay import NoDelayAE

GLOBAL = "1.2.840.10008.5.1.4.34.5"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on this machine (the database's share of the work)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


class Subscriber:
    """The global subscriber: every State Report, in arrival order."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        ae = NoDelayAE(ae_title="SUB")
        ae.add_supported_context(UnifiedProcedureStepEvent)
        ae.add_supported_context(UnifiedProcedureStepPush)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])

    def _on_report(self, event):
        with self.lock:
            self.arrivals.append((str(event.request.AffectedSOPInstanceUID), int(event.request.EventTypeID)))
        return 0x0000, None


def workitem() -> Dataset:
    """A workitem with every Type 1 and Type 2 attribute of PS3.4 Table CC.2.5-3 (as the tests' own)."""
    ds = Dataset()
    ds.TransactionUID = None
    ds.ScheduledProcedureStepPriority, ds.ProcedureStepLabel, ds.WorklistLabel = "MEDIUM", "bench", "BENCH"
    station = Dataset()
    station.CodeValue, station.CodingSchemeDesignator, station.CodeMeaning = "STATION1", "99WFM", "STATION1"
    ds.ScheduledStationNameCodeSequence = [station]
    ds.ScheduledProcedureStepStartDateTime, ds.ExpectedCompletionDateTime = "20261205090000", "20261205100000"
    ds.InputReadinessState, ds.ProcedureStepState = "READY", "SCHEDULED"
    ds.StudyInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Two^Servers", "TS1", "19700101", "F"
    for keyword in ("CommentsOnTheScheduledProcedureStep", "IssuerOfPatientID", "AdmittingDiagnosesDescription",
                    "AdmissionID"):
        setattr(ds, keyword, None)
    for keyword in ("ScheduledStationClassCodeSequence", "ScheduledStationGeographicLocationCodeSequence",
                    "ScheduledWorkitemCodeSequence", "InputInformationSequence",
                    "ScheduledProcessingParametersSequence", "IssuerOfPatientIDQualifiersSequence",
                    "OtherPatientIDsSequence", "AdmittingDiagnosesCodeSequence", "IssuerOfAdmissionIDSequence",
                    "ReferencedRequestSequence", "ProcedureStepProgressInformationSequence",
                    "UnifiedProcedureStepPerformedProcedureSequence"):
        setattr(ds, keyword, [])
    return ds


def haproxy(tmp: Path, front: int, backends: list[int]) -> subprocess.Popen:
    config = tmp / "haproxy.cfg"
    config.write_text("\n".join([
        "global", "  maxconn 2000",
        "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 120s", "  timeout server 120s",
        "frontend wfm", f"  bind 127.0.0.1:{front}", "  default_backend servers",
        "backend servers", "  balance roundrobin",
        *[f"  server s{i} 127.0.0.1:{port} check inter 200ms fall 1 rise 2" for i, port in enumerate(backends)],
        ""]))
    proc = subprocess.Popen(["haproxy", "-f", str(config), "-db"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "haproxy.log", "wb"))
    wait_listening(front, proc)
    return proc


def start_server(tmp: Path, name: str, url: str, subscriber_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = tmp / f"{name}.toml"
    config.write_text(f'database_url = "{url}"\nhost = "127.0.0.1"\nport = {port}\nhttp_port = 0\n'
                      f'ae_title = "WFM"\nlog_level = "WARNING"\nmax_associations = 100\n'
                      f'max_associations_per_address = 100\nmax_associations_per_ae = 100\n'
                      f'event_retry_initial = 0.05\nevent_retry_max_interval = 0.2\n\n'
                      f'[[remote_ae]]\nae_title = "SUB"\nhost = "127.0.0.1"\nport = {subscriber_port}\n')
    proc = subprocess.Popen([sys.executable, "-m", "workflow", "--config", str(config), "serve"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "wb"))
    wait_listening(port, proc)
    return proc, port


def associate(port: int):
    ae = NoDelayAE(ae_title="LOADGEN")
    ae.add_requested_context(InstanceAvailabilityNotification)
    ae.add_requested_context(UnifiedProcedureStepPush)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
    return assoc if assoc.is_established else None


class Load:
    """The senders: jobs from one queue, a new association every `per_association` jobs (so HAProxy
    spreads them), a job whose association failed goes back on the queue (an IAN repeated is merged,
    a workitem created twice answers 0111: both count as acknowledged)."""

    def __init__(self, port: int, jobs: list[tuple[str, str, bytes | Dataset]], senders: int, rate: float,
                 per_association: int) -> None:
        self.port, self.senders, self.rate, self.per_association = port, senders, rate, per_association
        self.jobs: queue.Queue = queue.Queue()
        for job in jobs:
            self.jobs.put(job)
        self.total = len(jobs)
        self.acked: dict[str, str] = {}  # uid -> kind
        self.latencies: list[float] = []
        self.failures = 0
        self.lock = threading.Lock()
        self.started = 0.0

    def run(self, on_half=None) -> float:
        self.started = time.perf_counter()
        threads = [threading.Thread(target=self._sender, args=(i,), daemon=True) for i in range(self.senders)]
        for thread in threads:
            thread.start()
        halfway = False
        while any(t.is_alive() for t in threads):
            if not halfway and on_half and len(self.acked) >= self.total // 2:
                on_half()
                halfway = True
            time.sleep(0.01)
        return time.perf_counter() - self.started

    def _due(self, n: int) -> None:
        if self.rate:
            delay = self.started + n / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def _sender(self, index: int) -> None:
        assoc, used, deadline = None, 0, time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            kind, uid, payload = job
            with self.lock:
                self._due(len(self.acked) + self.failures)
            if assoc is None or used >= self.per_association or not assoc.is_established:
                if assoc is not None and assoc.is_established:
                    assoc.release()
                assoc, used = associate(self.port), 0
                if assoc is None:
                    self.jobs.put(job)
                    with self.lock:
                        self.failures += 1
                    time.sleep(0.1)
                    continue
            began = time.perf_counter()
            try:
                if kind == "ian":
                    status, _ = assoc.send_n_create(payload, InstanceAvailabilityNotification, uid)
                else:
                    status, _ = assoc.send_n_create(payload, UnifiedProcedureStepPush, uid)
            except Exception:  # noqa: BLE001 - the server went away mid-request: try again
                status = None
            used += 1
            code = getattr(status, "Status", None)
            if code in (0x0000, 0x0111) or (code is not None and 0xB000 <= code <= 0xBFFF):
                with self.lock:
                    self.acked[uid] = kind
                    self.latencies.append(time.perf_counter() - began)
            else:
                self.jobs.put(job)
                with self.lock:
                    self.failures += 1
                if code is not None and code not in (0x0110, 0xA700):
                    raise RuntimeError(f"{kind} {uid} refused with 0x{code:04X}")
                assoc = None
        if assoc is not None and assoc.is_established:
            assoc.release()


def subscribe(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assoc = associate(port)
        if assoc is not None:
            info = Dataset()
            info.ReceivingAE, info.DeletionLock = "SUB", "FALSE"
            status, _ = assoc.send_n_action(info, 3, UnifiedProcedureStepPush, GLOBAL)
            assoc.release()
            if status and status.Status == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("could not subscribe")


def check(url: str, load: Load, subscriber: Subscriber, instances: int, killed: bool) -> dict:
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    ians = [uid for uid, kind in load.acked.items() if kind == "ian"]
    works = [uid for uid, kind in load.acked.items() if kind == "ups"]
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT sop_instance_uid, instance_count FROM notification")).all())
        workitems = {r[0] for r in conn.execute(text("SELECT sop_instance_uid FROM workitem")).all()}
        order = [r[0] for r in conn.execute(text(
            "SELECT workitem_uid FROM outbox_event WHERE receiving_ae = 'SUB' AND event_type_id = 1 ORDER BY id"))]
    engine.dispose()
    lost_ians = [u for u in ians if stored.get(u) != instances]
    lost_works = [u for u in works if u not in workitems]
    deadline = time.monotonic() + 60
    wanted = set(works)
    while time.monotonic() < deadline:
        with subscriber.lock:
            got = {u for u, e in subscriber.arrivals if e == 1}
        if wanted <= got:
            break
        time.sleep(0.1)
    time.sleep(2)  # anything sent twice arrives by now
    with subscriber.lock:
        reports = [u for u, e in subscriber.arrivals if e == 1]
    first, seen, duplicates = [], set(), 0
    for uid in reports:
        if uid in seen:
            duplicates += 1
        else:
            seen.add(uid)
            first.append(uid)
    in_order = [u for u in order if u in seen] == first
    missing_reports = sorted(wanted - seen)
    ok = not lost_ians and not lost_works and not missing_reports and in_order and (killed or duplicates == 0)
    return {"acked_ians": len(ians), "acked_workitems": len(works), "lost_ians": len(lost_ians),
            "lost_workitems": len(lost_works), "missing_reports": len(missing_reports),
            "duplicate_reports": duplicates, "reports_in_commit_order": in_order, "ok": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes (the test suite runs it)")
    parser.add_argument("--ians", type=int, default=3000)
    parser.add_argument("--workitems", type=int, default=300)
    parser.add_argument("--instances", type=int, default=10, help="instances per IAN")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0, help="target requests/s (0: as fast as they go)")
    parser.add_argument("--kill", action="store_true", help="SIGKILL one server when half the load is acknowledged")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()
    if args.smoke:
        args.ians, args.workitems, args.senders = 120, 30, 4
    if shutil.which("haproxy") is None:
        print("haproxy is not installed (apt-get install haproxy)", file=sys.stderr)
        return 2
    database = postgres_database()
    if database is None:
        return 2
    url, drop = database
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="wfm-two-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            subprocess.run([sys.executable, "-m", "workflow", "db", "upgrade"], check=True, capture_output=True,
                           env={**os.environ, "WFM_DATABASE_URL": url})
            subscriber = Subscriber()
            (a, port_a), (b, port_b) = (start_server(tmp, n, url, subscriber.port) for n in ("a", "b"))
            procs += [a, b]
            front = free_port()
            procs.append(haproxy(tmp, front, [port_a, port_b]))
            subscribe(front)
            jobs = [("ian", generate_uid(), make_ian(args.instances)) for _ in range(args.ians)]
            jobs += [("ups", generate_uid(), workitem()) for _ in range(args.workitems)]
            jobs.sort(key=lambda job: hash(job[1]))  # interleaved
            load = Load(front, jobs, args.senders, args.rate, per_association=10)
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in (a, b)}
            postgres_before = postgres_cpu_seconds()
            killed = []

            def kill_one() -> None:
                if args.kill:
                    cpu_before[a.pid] = cpu_seconds(a.pid) - cpu_before[a.pid]  # what it spent until then
                    a.send_signal(signal.SIGKILL)
                    a.wait(10)
                    killed.append(a.pid)

            seconds = load.run(kill_one)
            cpu = {"a": cpu_before[a.pid] if killed else cpu_seconds(a.pid) - cpu_before[a.pid],
                   "b": cpu_seconds(b.pid) - cpu_before[b.pid], "postgres": postgres_cpu_seconds() - postgres_before}
            result = check(url, load, subscriber, args.instances, bool(killed))
            latencies = sorted(load.latencies)
            result.update({
                "requests_per_s": round(len(load.acked) / seconds, 1),
                "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
                "latency_p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1) if latencies else None,
                "cpu_ms_per_request": {k: round(v * 1000 / max(1, len(load.acked)), 2) for k, v in cpu.items()},
                "retried_requests": load.failures, "killed": bool(killed), "senders": args.senders,
            })
            subscriber.server.shutdown()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            drop()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
