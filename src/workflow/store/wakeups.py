"""Wake-ups across processes on one PostgreSQL: a transaction that wrote work for a background worker
asks `notify_at_commit(conn, channel)`; PostgreSQL delivers the NOTIFY when (and only if) it commits, to
every server process on the database, whose `Listener` calls the callbacks of that channel (in-process
wake-ups of the workers). SQLite serves one process: its workers are woken in-process only.

A lost connection is retried; meanwhile the workers' long fallback intervals are the safety net."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable

from sqlalchemy import Connection, Engine

from workflow.store.at_commit import notify_at_commit as _notify_at_commit

log = logging.getLogger("workflow.store")

EVENTS = "wfm_events"  # outbox events written (UPS event reports owed to subscribers)
READINESS = "wfm_readiness"  # studies marked for readiness evaluation by a process without a worker
AUDIT = "wfm_audit"  # audit records written (any process's sender may drain them)


def notify_at_commit(conn: Connection, channel: str) -> None:
    """Wake `channel`'s listeners in every process once `conn`'s transaction commits (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        _notify_at_commit(conn, channel)


class Listener:
    """One thread per process LISTENing on a dedicated connection; `on(channel, callback)` before
    `start()`. Does nothing on SQLite."""

    def __init__(self, engine: Engine, retry: float = 5.0) -> None:
        self.engine, self.retry = engine, retry
        self._callbacks: dict[str, list[Callable[[], object]]] = defaultdict(list)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait for it)

    def on(self, channel: str, callback: Callable[[], object]) -> None:
        self._callbacks[channel].append(callback)

    def start(self) -> None:
        if self.engine.dialect.name != "postgresql" or not self._callbacks:
            return
        self._thread = threading.Thread(target=self._run, name="wfm-listen", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - retried; the fallback intervals cover the gap
                self.listening.clear()
                log.warning(f"LISTEN connection lost ({exc.__class__.__name__}: {exc}); retrying in {self.retry} s")
                self._stopping.wait(self.retry)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        conn = raw.dbapi_connection
        raw.detach()  # our own for good: never back to the pool while LISTENing
        try:
            conn.autocommit = True
            for channel in self._callbacks:
                conn.execute(f"LISTEN {channel}")
            self.listening.set()
            # Everything owed may have been written while we were not listening: wake everyone once.
            self._fire(list(self._callbacks))
            while not self._stopping.is_set():
                # Back at the first notification (or after a second, to see `stop`).
                self._fire(sorted({n.channel for n in conn.notifies(timeout=1.0, stop_after=1)}))
        finally:
            self.listening.clear()
            conn.close()

    def _fire(self, channels: list[str]) -> None:
        for channel in channels:
            for callback in self._callbacks.get(channel, ()):
                callback()

