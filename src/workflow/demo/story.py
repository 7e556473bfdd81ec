"""The story `wfm demo` tells, one narrated line per step:

an archive (the reference archive) and a wfm server start; a subscriber subscribes; a scheduler
creates a workitem for a study (INCOMPLETE); a modality performs it (MPPS) and stores the images;
the archive's IAN arrives and the workitem becomes READY with its Input Information; a performer
claims and completes it while the subscriber hears every state; a reconciliation finds the two
faults the demo seeded (an image announced but not held, one held but never announced); its report
is written as HTML and verified. The reference archive sends no IANs itself: the demo sends them in
its name (calling AE REFARCH, Retrieve AE REFARCH), as an archive would after storing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, TextIO

from pydicom.uid import generate_uid

from workflow.dimse.client import Peer, Step
from workflow.demo import modality
from workflow.demo.processes import Child, StartFailed, free_port, start, stop_all, wait_ready
from workflow.demo.subscriber import STATE_REPORT, Subscriber
from workflow.ian.dimse.scu import build_ians, scan, send_ians
from workflow.mpps.dimse.scu import MppsClient, final, in_progress, read_studies
from workflow.ups.dimse.scu import UpsClient, code, new_workitem, request_item

ARCHIVE, SERVER, SUBSCRIBER = "REFARCH", "WFM", "SUBSCRIBER"
IMAGES = 4  # the modality makes four; the fourth never reaches the archive (a seeded fault)
PORT_TRIES = 3  # a child whose port another program took meanwhile starts again on another one


class StepFailed(RuntimeError):
    """A request of the story failed; the message is its status line."""


def ok(*steps: Step) -> None:
    for step in steps:
        if not step.answer.ok:
            raise StepFailed(str(step))


class Narrator:
    def __init__(self, out: TextIO, interrupted: threading.Event | None = None) -> None:
        self.out = out
        self.started = time.monotonic()
        self.number = 0
        self.interrupted = interrupted

    def __call__(self, text: str) -> None:
        if self.interrupted is not None and self.interrupted.is_set():
            raise KeyboardInterrupt  # the signal's own was dropped (see cli/demo.py)
        self.number += 1
        print(f"[{time.monotonic() - self.started:5.1f} s] {self.number:2}. {text}", file=self.out, flush=True)


class Story:
    def __init__(self, folder: Path, out: TextIO, keep: bool = False,
                 interrupted: threading.Event | None = None) -> None:
        self.folder = folder
        self.out = out
        self.keep = keep
        self.say = Narrator(out, interrupted)
        self.children: list[Child] = []
        self.subscriber: Subscriber | None = None
        self.ports = {name: free_port() for name in (ARCHIVE, SERVER)}  # the subscriber's: its own bind
        self.config = folder / "wfm.toml"

    def peer(self, called: str, calling: str) -> Peer:
        return Peer("127.0.0.1", self.ports[called], called, calling, timeout=20.0)

    # ------------------------------------------------------------------ the servers

    def _start(self, name: str, ae_title: str, args: Callable[[], list[str]], log: str) -> Child:
        """A server as a child process, ready once it answers C-ECHO. Its port was free when chosen, but
        another program may take it before the child binds: then the child starts again on another
        (`args` is asked again, with the new port in `self.ports`)."""
        attempt = 1
        while True:
            child = start(name, args(), self.folder / log, outlive_us=self.keep)
            self.children.append(child)
            try:
                wait_ready(child, self.peer(ae_title, "DEMO"))
                return child
            except StartFailed:
                taken = child.process.poll() is not None and "already in use" in child.log_tail(20)
                if not taken or attempt == PORT_TRIES:
                    raise
            self.children.remove(child)
            self.ports[ae_title] = free_port()
            attempt += 1

    def start_archive(self) -> None:
        child = self._start("reference archive", ARCHIVE, lambda: [
            "-m", "refarchive", "--ae-title", ARCHIVE, "--port", str(self.ports[ARCHIVE]),
            "--db", str(self.folder / "archive.db"), "--log-level", "WARNING"], "archive.log")
        self.say(f"reference archive {ARCHIVE} listening on 127.0.0.1:{self.ports[ARCHIVE]} "
                 f"(pid {child.pid}, python -m refarchive)")

    def start_server(self) -> None:
        if self.subscriber is None:  # listening first: the server's configuration names its port
            self.subscriber = Subscriber(SUBSCRIBER, 0).start()
            self.ports[SUBSCRIBER] = self.subscriber.port

        def args() -> list[str]:
            self.config.write_text(self._server_config(), encoding="utf-8")
            return ["-m", "workflow", "serve", "--config", str(self.config)]

        child = self._start("wfm server", SERVER, args, "wfm.log")
        self.say(f"wfm server {SERVER} listening on 127.0.0.1:{self.ports[SERVER]} (pid {child.pid}, "
                 f"wfm serve --config {self.config})")

    def _server_config(self) -> str:
        return f"""# written by wfm demo
database_url = "sqlite:///{self.folder / 'wfm.db'}"
ae_title = "{SERVER}"
host = "127.0.0.1"
port = {self.ports[SERVER]}
http_port = 0
readiness_delay = 0.1
shutdown_grace = 3
event_retry_initial = 0.5

[[remote_ae]]          # the demo's subscriber (its Event SCP)
ae_title = "{SUBSCRIBER}"
host = "127.0.0.1"
port = {self.ports[SUBSCRIBER]}

[[remote_ae]]          # the archive, reconciled on demand
ae_title = "{ARCHIVE}"
host = "127.0.0.1"
port = {self.ports[ARCHIVE]}
[remote_ae.reconcile]
method = "auto"
"""

    def subscribe(self) -> None:
        with UpsClient.open(self.peer(SERVER, SUBSCRIBER)) as ups:
            step = ups.subscribe(SUBSCRIBER)
        ok(step)
        self.say(f"subscriber {SUBSCRIBER} (an Event SCP on 127.0.0.1:{self.ports[SUBSCRIBER]}) subscribes "
                 f"to every workitem: {step.answer}")

    # ------------------------------------------------------------------ the workflow

    def schedule(self, study_uid: str) -> str:
        uid = generate_uid()
        ds = new_workitem(PatientName=modality.PATIENT["PatientName"], PatientID=modality.PATIENT["PatientID"],
                          StudyInstanceUID=study_uid, ProcedureStepLabel="Read the CT head", WorklistLabel="READING",
                          ScheduledWorkitemCodeSequence=[code("110005^DCM^Interpretation")],
                          ScheduledStationNameCodeSequence=[code("READING1^99LOCAL^Reading room 1")],
                          ReferencedRequestSequence=[request_item(study_uid, "DEMOACC1")])
        with UpsClient.open(self.peer(SERVER, "SCHEDULER")) as ups:
            step = ups.create(ds, uid)
        ok(step)
        report = self.subscriber.state_report(uid, "SCHEDULED/INCOMPLETE")
        self.say(f"scheduler creates workitem {uid} for study {study_uid}: {step.answer}; "
                 f"it is {report.state}")
        return uid

    def perform(self, study_uid: str) -> list[Path]:
        """The modality's MPPS and images, the workstation's secondary capture; returns the images the
        modality made (all of them: the archive's IAN names the one that never reached it too)."""
        images_folder, extra_folder = self.folder / "images", self.folder / "workstation"
        images_folder.mkdir()
        extra_folder.mkdir()
        series_uid = generate_uid()
        images = [modality.image(images_folder, study_uid, series_uid, n) for n in range(1, IMAGES + 1)]
        study = read_studies(images)[0]
        pps_uid = generate_uid()
        with MppsClient.open(self.peer(SERVER, "CT1")) as mpps:
            started = mpps.create(in_progress(study, "CT1", "DEMO1", datetime.now()), pps_uid)
            ok(started)
            self.say(f"modality CT1 starts MPPS {pps_uid}: {started.answer}")
            stored = modality.store(images[:-1], self.peer(ARCHIVE, "CT1"))
            ok(*stored)
            self.say(f"modality stores {len(stored)} of its {IMAGES} images at {ARCHIVE} (C-STORE: "
                     f"{stored[0].answer}); seeded fault: image {IMAGES} never arrives")
            ended = mpps.set(pps_uid, final(study, datetime.now()))
            ok(ended)
        self.say(f"modality completes MPPS: {IMAGES} images in 1 series performed: {ended.answer}")
        extra = [modality.image(extra_folder, study_uid, generate_uid(), 1, sop_class=modality.SECONDARY_CAPTURE,
                                modality="OT", series_number=2, description="Workstation capture")]
        ok(*modality.store(extra, self.peer(ARCHIVE, "WORKSTATION")))
        self.say(f"a workstation stores a secondary capture at {ARCHIVE}; seeded fault: it is never announced")
        return images

    def announce(self, images: list[Path]) -> None:
        results = send_ians(build_ians(scan(images), "ONLINE", [ARCHIVE]), "127.0.0.1", self.ports[SERVER],
                            SERVER, calling_ae=ARCHIVE, timeout=20.0)
        if not all(r.ok for r in results):
            raise StepFailed(f"IAN: status 0x{results[0].status or 0:04X} {results[0].error_comment or ''}")
        self.say(f"{ARCHIVE}'s IAN reaches wfm: {results[0].instances} images ONLINE at {ARCHIVE}, status "
                 f"0x{results[0].status:04X} (sent by the demo in the archive's name: the reference archive "
                 f"announces nothing itself)")

    def ready(self, uid: str) -> None:
        self.subscriber.state_report(uid, "SCHEDULED/READY")
        with UpsClient.open(self.peer(SERVER, "PERFORMER")) as ups:
            got = ups.get(uid, "InputReadinessState", "InputInformationSequence")
        ok(got)
        items = got.answer.dataset.InputInformationSequence
        where = sorted({str(ae.RetrieveAETitle) for item in items for ae in item.DICOMRetrievalSequence})
        count = sum(len(item.ReferencedSOPSequence) for item in items)
        self.say(f"workitem INCOMPLETE -> READY: Input Information of {len(items)} series item, {count} "
                 f"images at {', '.join(where)}")
        self.say(f"subscriber's State Reports so far: {self.heard(uid)}")

    def claim_and_complete(self, uid: str) -> None:
        with UpsClient.open(self.peer(SERVER, "PERFORMER")) as ups:
            steps, transaction_uid = ups.claim(uid)
            ok(*steps)
            self.subscriber.state_report(uid, "IN PROGRESS")
            self.say(f"performer claims the workitem: IN PROGRESS, Transaction UID {transaction_uid}")
            steps = ups.complete(uid, transaction_uid, performer="Demo^Reader")
            ok(*steps)
        self.subscriber.state_report(uid, "COMPLETED")
        self.say(f"performer completes it (Performed Procedure Sequence by N-SET, then COMPLETED); the "
                 f"subscriber heard: {self.heard(uid)}")

    def heard(self, uid: str) -> str:
        return ", ".join(r.state for r in self.subscriber.received
                         if r.workitem_uid == uid and r.event_type == STATE_REPORT)

    # ------------------------------------------------------------------ reconciliation and report

    def wfm(self, *args: str) -> subprocess.CompletedProcess:
        """`wfm ARGS --config CONFIG` as a child process; StepFailed unless it exits 0."""
        command = [sys.executable, "-m", "workflow", *args, "--config", str(self.config)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise StepFailed(f"wfm {' '.join(args)} exited with status {done.returncode}: {tail}")
        return done

    def reconcile(self) -> str:
        done = self.wfm("reconcile", "run", ARCHIVE)
        run_uid = done.stdout.strip().splitlines()[-1]
        summary = done.stderr.strip().splitlines()[-1]
        status, _, found = summary.partition(": ")
        try:
            found = ", ".join(f"{n} {reason}" for reason, n in json.loads(found).items())
        except ValueError:
            pass
        self.say(f"`wfm reconcile run {ARCHIVE}`: {status}, found {found} (run {run_uid})")
        return run_uid

    def report(self, run_uid: str) -> Path:
        html = self.folder / "report.html"
        self.wfm("report", "show", run_uid, "--format", "html", "-o", str(html))
        verified = self.wfm("report", "verify", run_uid).stdout.strip().split(":")[0]
        self.say(f"report written to {html}; `wfm report verify` says {verified}")
        return html

    # ------------------------------------------------------------------ the whole

    def run(self) -> tuple[str, str, str]:
        """The story; returns (workitem UID, study UID, reconciliation run UID)."""
        print(f"wfm demo: the workflow on 127.0.0.1, in {self.folder}", file=self.out, flush=True)
        self.start_archive()
        self.start_server()
        self.subscribe()
        study_uid = generate_uid()
        uid = self.schedule(study_uid)
        images = self.perform(study_uid)
        self.announce(images)
        self.ready(uid)
        self.claim_and_complete(uid)
        run_uid = self.reconcile()
        self.report(run_uid)
        return uid, study_uid, run_uid

    def stop(self) -> None:
        """Stop the servers unless they are kept (each by its PID), then the subscriber (it hears the
        server going down)."""
        if not self.keep:
            stop_all(self.children)
        if self.subscriber is not None:
            self.subscriber.stop()

    def epilogue(self, uid: str, study_uid: str, run_uid: str) -> None:
        lines = [f"export WFM_CONFIG={self.config}",
                 "wfm ups list", f"wfm ups show {uid}", f"wfm study {study_uid}", f"wfm explain {uid}",
                 "wfm events --all", "wfm report list", f"wfm report show {run_uid} --format csv"]
        if self.keep:
            server = self.ports[SERVER]
            lines += [f"wfm ups create --port {server} --patient-id P2 --label 'Another one'",
                      f"wfm ian send {self.folder / 'images'} --port {server} --retrieve-ae {ARCHIVE}",
                      f"wfm mpps send {self.folder / 'images'} --port {server}",
                      f"wfm reconcile run {ARCHIVE}"]
        print("\nLook further (logs: archive.log and wfm.log in the folder):", file=self.out)
        print("\n".join(f"  {line}" for line in lines), file=self.out)
        if self.keep:
            pids = " ".join(str(c.pid) for c in self.children)
            print(f"\nThe servers keep running ({', '.join(f'{c.name} pid {c.pid}' for c in self.children)}; "
                  f"the subscriber ran inside the demo and has stopped). Stop them with:\n  kill {pids}",
                  file=self.out)
        else:
            print(f"\nThe servers are stopped; their databases stay in {self.folder} (delete it when done).",
                  file=self.out)
