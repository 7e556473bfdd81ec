"""The composition root: builds the store, the services and the DICOM server; starts and stops them."""

from __future__ import annotations

import logging
import signal
import threading

from sqlalchemy import Engine

from workflow.config import Settings
from workflow.dimse.ian_scp import IanScp
from workflow.dimse.server import DicomServer
from workflow.services.ingest import IngestService
from workflow.store import migrate
from workflow.store.engine import make_engine

log = logging.getLogger("workflow.app")


class App:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.ingest = IngestService(self.engine)
        self.dicom = DicomServer(settings, IanScp(self.ingest, settings.max_instances_per_ian))

    def start(self) -> None:
        migrate.upgrade(self.engine)
        log.info(f"database at schema revision {migrate.current_revision(self.engine)}")
        self.dicom.start()

    def stop(self) -> bool:
        clean = self.dicom.stop()
        self.engine.dispose()
        return clean

    def run_until_signalled(self) -> int:
        """`wfm serve`: run until SIGTERM or SIGINT, then stop cleanly. Exit status 0."""
        stop = threading.Event()

        def on_signal(signum, _frame):
            log.info(f"received {signal.Signals(signum).name}; finishing requests in flight")
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not stop.wait(3600):
            pass
        self.stop()
        return 0
