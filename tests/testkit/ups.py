"""UPS in tests: workitems, SCU associations with every UPS context, and a real Event SCP (a
subscriber) that can be stopped and started again on the same port."""

from __future__ import annotations

import queue
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import (UnifiedProcedureStepEvent, UnifiedProcedureStepPull, UnifiedProcedureStepPush,
                                  UnifiedProcedureStepQuery, UnifiedProcedureStepWatch)

from workflow.dimse import response_fields  # noqa: F401
from workflow.dimse.nodelay import NoDelayAE
from workflow.dimse.reactor import release

PUSH, PULL, WATCH, QUERY = (UnifiedProcedureStepPush, UnifiedProcedureStepPull, UnifiedProcedureStepWatch,
                            UnifiedProcedureStepQuery)
GLOBAL = "1.2.840.10008.5.1.4.34.5"
FILTERED = "1.2.840.10008.5.1.4.34.5.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code(value: str, scheme: str = "99WFM", meaning: str | None = None) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning or value
    return item


def workitem(**overrides) -> Dataset:
    """A workitem N-CREATE data set with every Type 1 and Type 2 attribute of PS3.4 Table CC.2.5-3."""
    ds = Dataset()
    ds.TransactionUID = None
    ds.ScheduledProcedureStepPriority = "MEDIUM"
    ds.ProcedureStepLabel = "CT head review"
    ds.WorklistLabel = "READING"
    ds.ScheduledStationNameCodeSequence = [code("STATION1")]
    ds.ScheduledStationClassCodeSequence = []
    ds.ScheduledStationGeographicLocationCodeSequence = []
    ds.ScheduledProcedureStepStartDateTime = "20261123090000"
    ds.ExpectedCompletionDateTime = "20261123100000"
    ds.ScheduledWorkitemCodeSequence = [code("110005", "DCM", "Interpretation")]
    ds.InputReadinessState = "READY"
    ds.InputInformationSequence = []
    ds.StudyInstanceUID = generate_uid()
    ds.ScheduledProcessingParametersSequence = []
    ds.CommentsOnTheScheduledProcedureStep = None
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID1"
    ds.IssuerOfPatientID = None
    ds.IssuerOfPatientIDQualifiersSequence = []
    ds.OtherPatientIDsSequence = []
    ds.AdmittingDiagnosesDescription = None
    ds.AdmittingDiagnosesCodeSequence = []
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AdmissionID = None
    ds.IssuerOfAdmissionIDSequence = []
    ds.ReferencedRequestSequence = []
    ds.ProcedureStepState = "SCHEDULED"
    ds.ProcedureStepProgressInformationSequence = []
    ds.UnifiedProcedureStepPerformedProcedureSequence = []
    for key, value in overrides.items():
        if value is ...:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


@contextmanager
def ups_association(port: int, calling_ae: str = "SCHEDULER", contexts=(PUSH, PULL, WATCH, QUERY)):
    ae = NoDelayAE(ae_title=calling_ae)
    for context in contexts:
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", port, ae_title="WFM")
    assert assoc.is_established
    try:
        yield assoc
    finally:
        release(assoc)  # bounded: pynetdicom's release() can wait for ever on a reactor that has ended


def final_state_requirements(cancellation_datetime: str | None = None) -> Dataset:
    """An N-SET (or UPS-RS Update) filling what COMPLETED and CANCELED need (Table CC.2.5-3 Final State
    P/X rows)."""
    mod = Dataset()
    performed = Dataset()
    performed.PerformedStationNameCodeSequence = [code("STATION1")]
    performed.PerformedProcedureStepStartDateTime = "20261123090500"
    performed.PerformedProcedureStepEndDateTime = "20261123091000"
    performed.PerformedWorkitemCodeSequence = [code("110005", "DCM", "Interpretation")]
    performed.OutputInformationSequence = []
    performed.ActualHumanPerformersSequence = []
    mod.UnifiedProcedureStepPerformedProcedureSequence = [performed]
    progress = Dataset()
    if cancellation_datetime:
        progress.ProcedureStepCancellationDateTime = cancellation_datetime
    progress.ReasonForCancellation = "test"
    progress.ProcedureStepDiscontinuationReasonCodeSequence = [code("110513", "DCM", "Discontinued")]
    mod.ProcedureStepProgressInformationSequence = [progress]
    return mod


def action(assoc, uid: str, action_type: int, meta=WATCH, **keywords) -> Dataset:
    info = Dataset()
    for key, value in keywords.items():
        setattr(info, key, value)
    status, _ = assoc.send_n_action(info if keywords else None, action_type, PUSH, uid, meta_uid=meta)
    return status


def claim(assoc, uid: str, txn: str | None = None) -> tuple[Dataset, str]:
    txn = txn or generate_uid()
    return action(assoc, uid, 1, PULL, ProcedureStepState="IN PROGRESS", TransactionUID=txn), txn


def get(assoc, uid: str, *keywords: str) -> tuple[Dataset, Dataset | None]:
    from pydicom.datadict import tag_for_keyword
    return assoc.send_n_get([tag_for_keyword(k) for k in keywords], PUSH, uid, meta_uid=PULL)


@dataclass
class Report:
    event_type: int
    uid: str
    info: Dataset
    calling_ae: str


class EventReceiver:
    """A subscriber's Event SCP: records every N-EVENT-REPORT it is sent."""

    def __init__(self, ae_title: str, port: int | None = None, transfer_syntaxes: list[str] | None = None) -> None:
        self.ae_title = ae_title
        self.transfer_syntaxes = transfer_syntaxes  # None: pynetdicom's defaults
        self.port = port or free_port()
        self.reports: queue.Queue[Report] = queue.Queue()
        self.seen: list[Report] = []
        self.associations = 0  # associations accepted (a busy subscriber should see one)
        self._server = None

    def start(self) -> "EventReceiver":
        ae = NoDelayAE(ae_title=self.ae_title)
        for context in (UnifiedProcedureStepEvent, UnifiedProcedureStepPush):
            if self.transfer_syntaxes:
                ae.add_supported_context(context, self.transfer_syntaxes)
            else:
                ae.add_supported_context(context)

        def on_report(event):
            info = event.event_information
            self.reports.put(Report(event.request.EventTypeID, str(event.request.AffectedSOPInstanceUID),
                                    info, event.assoc.requestor.ae_title))
            return 0x0000, None

        def on_accepted(event):
            self.associations += 1

        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report),
                                                     (evt.EVT_ACCEPTED, on_accepted)])
        return self

    def stop(self) -> None:
        """Down as a subscriber that went away: the associations it had open (the server keeps one to a
        busy subscriber) are aborted too."""
        if self._server:
            self._server.shutdown()  # no new association first, then those still open
            while self._server.active_associations:
                for assoc in self._server.active_associations:
                    assoc.abort()
                time.sleep(0.01)
            self._server = None

    def wait(self, predicate=lambda r: True, timeout: float = 15.0) -> Report:
        """The next report (already seen or arriving) that satisfies `predicate`."""
        for report in self.seen:
            if predicate(report):
                self.seen.remove(report)
                return report
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.ae_title}: no matching event report")
            try:
                report = self.reports.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(report):
                return report
            self.seen.append(report)

    def drain(self) -> list[Report]:
        out = list(self.seen)
        self.seen.clear()
        while not self.reports.empty():
            out.append(self.reports.get_nowait())
        return out


def subscribe_globally(app, ae_title: str, websocket: bool = True) -> None:
    """`ae_title` subscribed to every workitem (a UPS-RS subscriber's WebSocket unless `websocket=False`)."""
    from workflow.kernel.json_model import build

    outcome = app.worklist.subscribe(GLOBAL, build(ReceivingAE=ae_title, DeletionLock="FALSE"), websocket=websocket)
    assert outcome.status.code == 0, outcome


def create_over_dimse(app) -> str:
    """A new workitem, created by N-CREATE on `app`'s DICOM face; its UID."""
    uid = generate_uid()
    with ups_association(app.dicom.port) as assoc:
        assert assoc.send_n_create(workitem(), PUSH, uid)[0].Status == 0
    return uid
