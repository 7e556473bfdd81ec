"""The audit repository is Debian's rsyslog with its TLS module (RFC 5425), a peer no one here wrote:
the server sends its audit messages over TLS, verified against a CA the test makes with openssl; the
repository stopped during a burst of UPS changes and restarted: every message arrives, in order."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree
from pydicom.uid import generate_uid

from testkit.audit import free_port, valid
from testkit.http import http_app
from testkit.ups import PUSH, ups_association, workitem

pytestmark = pytest.mark.slow
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wfm test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=folder)
    return folder


class Rsyslog:
    def __init__(self, folder: Path, pki: Path, port: int) -> None:
        self.folder, self.port, self.log = folder, port, folder / "audit.log"
        self.config = folder / "rsyslog.conf"
        self.config.write_text(f"""
global(workDirectory="{folder}" maxMessageSize="64k"
       DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{pki / 'ca.pem'}"
       DefaultNetstreamDriverCertFile="{pki / 'server.pem'}" DefaultNetstreamDriverKeyFile="{pki / 'server.key'}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="raw" type="string" string="%rawmsg%\\n")
*.* action(type="omfile" file="{self.log}" template="raw")
""")
        self.process: subprocess.Popen | None = None

    def start(self) -> "Rsyslog":
        self.process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.config), "-i", str(self.folder / "pid")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read().decode()
                time.sleep(0.05)
        raise TimeoutError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        self.process = None

    def messages(self) -> list[bytes]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_bytes().split(b"\n") if b"<AuditMessage" in line]


def workitem_uids(lines: list[bytes]) -> list[str]:
    out = []
    for line in lines:
        xml = line[line.index(b"<AuditMessage"):]
        document = etree.fromstring(xml)
        if document.find("EventIdentification/EventID").get("csd-code") == "110111":
            out.append(document.find("ParticipantObjectIdentification").get("ParticipantObjectID"))
    return out


@pytest.mark.skipif(not Path(RSYSLOGD).exists() and not os.environ.get("CI"), reason="rsyslog is not installed")
def test_rsyslog_over_tls_gets_every_message_in_order(tmp_path, certificates):
    sqlite = f"sqlite:///{tmp_path / 'wfm.db'}"
    rsyslog = Rsyslog(tmp_path, certificates, free_port()).start()
    try:
        with http_app(sqlite, audit_repository=f"tls://127.0.0.1:{rsyslog.port}",
                      audit_ca_certificates=str(certificates / "ca.pem"),
                      event_retry_initial=0.2, event_retry_max_interval=0.5) as app:
            uids = [generate_uid() for _ in range(30)]
            with ups_association(app.dicom.port) as assoc:
                for i, uid in enumerate(uids):
                    if i == 10:
                        rsyslog.stop()  # the repository goes down in the middle of the burst
                    if i == 20:
                        rsyslog.start()
                    assert assoc.send_n_create(workitem(), PUSH, uid)[0].Status == 0
            deadline = time.monotonic() + 60
            while not set(uids) <= set(workitem_uids(rsyslog.messages())):
                assert time.monotonic() < deadline, f"{len(set(workitem_uids(rsyslog.messages())))} of 30 arrived"
                time.sleep(0.1)
        lines = rsyslog.messages()
        assert all(valid(line[line.index(b"<AuditMessage"):]) for line in lines)
        seen = [u for u in dict.fromkeys(workitem_uids(lines)) if u in uids]
        assert seen == uids
    finally:
        rsyslog.stop()
