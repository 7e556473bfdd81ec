"""A stop sends the responses it has already answered before it aborts the associations.

pynetdicom announces a response as sent (EVT_DIMSE_SENT, which the stop's in-flight count waits for)
before it queues the response's PDUs. Seen in a test run: SIGTERM during an 8,000-instance IAN; the IAN
was committed, the stop aborted the association in that gap, and the modality never heard the Success
(the DUL then refused the late P-DATA in Sta13). Here the gap is widened on purpose: a handler of the
same event, bound after the server's own, holds the response back while the server is stopped."""

from __future__ import annotations

import threading
import time

from pynetdicom import evt

from testkit.db import test_settings
from testkit.ian import association, make_ian, send
from workflow.app import App

HOLD = 0.5  # seconds the response waits, announced but not queued


def test_a_response_announced_before_a_stop_still_reaches_the_scu(tmp_path):
    app = App(test_settings(f"sqlite:///{tmp_path / 'wfm.db'}", shutdown_grace=5.0))
    app.start()
    announced = threading.Event()

    def hold_the_response(event) -> None:
        if event.message.command_set.CommandField & 0x8000:
            announced.set()
            time.sleep(HOLD)

    result: dict = {}

    def modality() -> None:
        with association(app.dicom.port) as assoc:
            result["status"], _ = send(assoc, make_ian())

    try:
        app.dicom._server.bind(evt.EVT_DIMSE_SENT, hold_the_response)
        sender = threading.Thread(target=modality)
        sender.start()
        assert announced.wait(10), "the IAN was never answered"
    finally:
        app.stop()
    sender.join(10)
    assert "status" in result and result["status"].Status == 0x0000, result
