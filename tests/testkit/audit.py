"""The audit trail in tests: the DICOM audit message schema (PS3.15 A.5.1) as a validator, and a syslog
receiver of the tests' own (RFC 5425 octet-counted frames over TCP) that can stop and start again on the
same port."""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from pathlib import Path

from lxml import etree

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).resolve().parents[1] / "audit" / "dicom_audit_message.rng")))
FRAME = re.compile(rb'^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[wfm@32473 record="(\d+)"\] \xef\xbb\xbf(.*)$', re.S)


def valid(xml: str | bytes) -> bool:
    document = etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    return SCHEMA.validate(document)


def schema_errors(xml: str | bytes) -> str:
    document = etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    SCHEMA.validate(document)
    return str(SCHEMA.error_log)


class SyslogReceiver:
    """Receives RFC 5425 frames on 127.0.0.1; `messages` holds (record id, msgid, xml bytes) in arrival
    order."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.messages: list[tuple[int, str, bytes]] = []
        self._lock = threading.Condition()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._connections: set[socket.socket] = set()

    def start(self) -> "SyslogReceiver":
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._connections.add(self.request)
                buffer = b""
                while True:
                    try:
                        data = self.request.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        if len(rest) < int(length):
                            break
                        receiver._take(rest[:int(length)])
                        buffer = rest[int(length):]

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (as a repository that goes down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            except OSError:
                pass
        self._connections.clear()

    def _take(self, frame: bytes) -> None:
        match = FRAME.match(frame)
        assert match, frame[:200]
        with self._lock:
            self.messages.append((int(match.group(7)), match.group(6).decode(), match.group(8)))
            self._lock.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0) -> list[tuple[int, str, bytes]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.messages):
                if not self._lock.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"audit messages not received: {len(self.messages)} so far")
            return list(self.messages)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def security_alerts(receiver: SyslogReceiver, text: str, timeout: float = 20.0) -> list[str]:
    """The outcome descriptions of the Security Alerts (110113) containing `text`, once one arrived."""
    from lxml import etree

    def found(messages):
        out = []
        for _, _, xml in messages:
            ident = etree.fromstring(xml).find("EventIdentification")
            description = ident.findtext("EventOutcomeDescription") or ""
            if ident.find("EventID").get("csd-code") == "110113" and text in description:
                out.append(description)
        return out
    receiver.wait_for(found, timeout)
    return found(receiver.messages)
