"""Drains the audit trail to the audit repository as syslog (RFC 5424), one AuditMessage per syslog
message, in record order: over TLS (RFC 5425: octet-counted frames, `tls://host:6514`), plain TCP
(`tcp://host:port`, the same framing) or UDP (RFC 5426, `udp://host:514`, one datagram each).

A record is SENT once written to the connection. TCP and TLS have no application acknowledgement, so
after a connection breaks the records written on it in the last REPLAY seconds are sent again on the
next one: the repository gets every record, in order, possibly twice (each carries its id as the
syslog MSGID's companion in the STRUCTURED-DATA, so a repository can drop a repeat). A repository that
is down costs retries with backoff, never a lost record."""

from __future__ import annotations

import logging
import os
import select as io_select
import socket
import ssl
import threading
import time
import zlib
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlparse

from sqlalchemy import Engine, func, select, text, update

from workflow.audit.tables import AuditRecord
from workflow.audit.trail import PENDING, SENT
from workflow.kernel.clock import utcnow
from workflow.store.engine import reading

log = logging.getLogger("workflow.audit")
A = AuditRecord.__table__
REPLAY = 10.0  # seconds of records sent again after a broken TCP/TLS connection
PRI = 10 * 8 + 5  # facility 10 (security/authorization), severity 5 (notice), as IHE ATNA uses
BATCH = 200
DRAIN_LOCK = zlib.crc32(b"wfm-audit-drain") & 0x7FFFFFFF


class RepositoryError(ConnectionError):
    pass


def syslog_frame(record_id: int, xml: str, hostname: str, at) -> bytes:
    """One RFC 5424 message: `<85>1 TIMESTAMP HOST wfm PID IHE+RFC-3881 [wfm@32473 record="N"] XML`."""
    header = (f"<{PRI}>1 {at.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} {hostname} wfm "
              f"{os.getpid()} IHE+RFC-3881 [wfm@32473 record=\"{record_id}\"] ")
    return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + xml.encode("utf-8")


class Repository:
    """A connection to the audit repository, opened on demand."""

    def __init__(self, url: str, ca_file: str = "", timeout: float = 10.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("tls", "tcp", "udp") or not parsed.hostname or not parsed.port:
            raise ValueError(f"audit_repository {url!r}: expected tls://host:port, tcp://host:port or udp://host:port")
        self.scheme, self.host, self.port, self.timeout = parsed.scheme, parsed.hostname, parsed.port, timeout
        self.ca_file = ca_file
        self._socket: socket.socket | None = None
        self.connected_at = 0.0

    def send(self, frame: bytes) -> None:
        try:
            if self.scheme == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.sendto(frame, (self.host, self.port))
                return
            if self._socket is None:
                self._connect()
            self._socket.sendall(str(len(frame)).encode("ascii") + b" " + frame)  # RFC 5425 octet counting
        except OSError as exc:
            self.close()
            raise RepositoryError(f"{self.scheme}://{self.host}:{self.port}: {exc}") from None

    def broken(self) -> bool:
        """Did the repository close the connection? It never sends anything (syslog is one-way), so a
        connection that has become readable was closed (EOF, a TLS close or alert) or failed."""
        if self._socket is None:
            return False
        try:
            readable, _, failed = io_select.select([self._socket], [], [self._socket], 0)
        except (OSError, ValueError):
            return True
        return bool(readable or failed)

    def _connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.scheme == "tls":
            context = ssl.create_default_context(cafile=self.ca_file or None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            raw = context.wrap_socket(raw, server_hostname=self.host)
        self._socket = raw
        self.connected_at = time.monotonic()

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
        self._socket = None


class AuditSender:
    """One thread: wakes when records were committed, in this process or (PostgreSQL NOTIFY) another,
    sends what is pending in id order, backs off when the repository is unreachable. `every` is only
    a safety net (a lost notification)."""

    def __init__(self, engine: Engine, repository: Repository, wake: threading.Event, every: float = 60.0,
                 retry_first: float = 1.0, retry_max: float = 60.0) -> None:
        self.engine, self.repository, self.wake = engine, repository, wake
        self.every, self.retry_first, self.retry_max = every, retry_first, retry_max
        self.hostname = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent_on_connection: list[tuple[int, float]] = []  # (record id, monotonic time written)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wfm-audit-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is pending (best effort within `timeout`), then stop."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.repository.close()

    def _run(self) -> None:
        delay = 0.0
        while True:
            self.wake.wait(delay or self.every)
            self.wake.clear()
            try:
                self.drain()
                delay = 0.0
            except RepositoryError as exc:
                delay = min(self.retry_max, max(self.retry_first, delay * 2))
                log.warning(f"audit repository unreachable, retrying in {delay:g} s: {exc}")
            except Exception:  # noqa: BLE001 - the records stay pending
                delay = min(self.retry_max, max(self.retry_first, delay * 2))
                log.exception("audit delivery round failed")
            if self._stop.is_set() and (delay or not self.pending_count()):
                return

    def drain(self) -> int:
        """Send every pending record in order; returns how many were sent. One process drains at a time
        (two would send the same records twice, out of order)."""
        with self._drain_lock():
            if self.repository.broken():
                self._replay_after_break()
            sent = 0
            while True:
                with reading(self.engine) as conn:
                    rows = conn.execute(select(A.c.id, A.c.created_at, A.c.message_xml)
                                        .where(A.c.status == PENDING).order_by(A.c.id).limit(BATCH)).all()
                if not rows:
                    return sent
                done: list[int] = []
                try:
                    for row in rows:
                        self._send(row)
                        done.append(row.id)
                except RepositoryError:
                    # SENT first, then the replay makes the recent ones PENDING again (not the reverse).
                    self._mark_sent(done)
                    self._replay_after_break()
                    raise
                except Exception:
                    self._mark_sent(done)
                    raise
                self._mark_sent(done)  # one commit per batch: a crash before it only sends them again
                sent += len(done)

    def _mark_sent(self, ids: list[int]) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(update(A).where(A.c.id.in_(ids)).values(status=SENT, sent_at=utcnow(),
                                                                    attempts=A.c.attempts + 1, last_error=None))

    @contextmanager
    def _drain_lock(self) -> Iterator[None]:
        """Across the server processes on one PostgreSQL, a session advisory lock; the next process waits
        and then drains what is left (SQLite serves one process)."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": DRAIN_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": DRAIN_LOCK})
                conn.commit()

    def _send(self, row) -> None:
        try:
            self.repository.send(syslog_frame(row.id, row.message_xml, self.hostname, row.created_at))
        except RepositoryError as exc:
            with self.engine.begin() as conn:
                conn.execute(update(A).where(A.c.id == row.id).values(attempts=A.c.attempts + 1,
                                                                     last_error=str(exc)[:2000]))
            raise
        now = time.monotonic()
        self._sent_on_connection = [(i, t) for i, t in self._sent_on_connection if now - t <= REPLAY]
        self._sent_on_connection.append((row.id, now))

    def _replay_after_break(self) -> None:
        """The connection broke: what was written on it recently may not have reached the repository.
        Those records become pending again (their order is kept: ids)."""
        recent = [i for i, t in self._sent_on_connection if time.monotonic() - t <= REPLAY]
        self._sent_on_connection = []
        self.repository.close()
        if recent:
            with self.engine.begin() as conn:
                conn.execute(update(A).where(A.c.id.in_(recent)).values(status=PENDING))
            log.warning(f"audit repository connection broke: {len(recent)} recent record(s) will be sent again")

    def pending_count(self) -> int:
        with reading(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(A).where(A.c.status == PENDING)).scalar_one()


