"""The demo's subscriber: a UPS Event SCP that keeps every N-EVENT-REPORT it is sent."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import UnifiedProcedureStepEvent, UnifiedProcedureStepPush

from workflow.dimse.client import TRANSFER_SYNTAXES
from workflow.dimse.nodelay import NoDelayAE

STATE_REPORT = 1


@dataclass(frozen=True)
class Report:
    event_type: int
    workitem_uid: str
    info: Dataset

    @property
    def state(self) -> str:
        """"STATE/READINESS" of a State Report."""
        return f"{self.info.get('ProcedureStepState', '')}/{self.info.get('InputReadinessState', '')}"


class Subscriber:
    def __init__(self, ae_title: str, port: int) -> None:
        self.ae_title = ae_title
        self.port = port
        self.reports: queue.Queue[Report] = queue.Queue()
        self.received: list[Report] = []
        self._server = None

    def start(self) -> "Subscriber":
        ae = NoDelayAE(ae_title=self.ae_title)
        for uid in (UnifiedProcedureStepEvent, UnifiedProcedureStepPush):
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)

        def on_report(event):
            self.reports.put(Report(event.request.EventTypeID, str(event.request.AffectedSOPInstanceUID),
                                    event.event_information))
            return 0x0000, None

        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        self.port = self._server.server_address[1]  # the one bound, when asked for 0
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def state_report(self, uid: str, state: str, timeout: float = 20.0) -> Report:
        """The State Report of workitem `uid` saying `state` ("SCHEDULED/READY", "COMPLETED/..."):
        waits for it; every report received on the way is kept in `received`."""
        deadline = time.monotonic() + timeout
        while True:
            for report in self.received:
                if report.event_type == STATE_REPORT and report.workitem_uid == uid and report.state.startswith(state):
                    return report
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no State Report {state} for {uid} within {timeout:g} s")
            try:
                self.received.append(self.reports.get(timeout=remaining))
            except queue.Empty:
                pass
