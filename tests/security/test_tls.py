"""DICOM TLS (PS3.15 Annex B, BCP 195) and HTTPS against peers no one here wrote: Debian's dcmtk
(`echoscu +tls`) with certificates made by `openssl`; a plain-TCP client, a TLS 1.1 client, a
client without a certificate and one with a stranger's certificate refused, each refusal logged as a
Security Alert; a stalled handshake that blocks nobody; a certificate subject that must match; our own
outgoing TLS to an event subscriber; HTTPS with the same certificate."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import UnifiedProcedureStepEvent, UnifiedProcedureStepPush, Verification

from testkit.audit import security_alerts
from testkit.certs import make_pki
from testkit.http import free_port, http_app
from testkit.orthanc import REQUIRE_ORTHANC
from testkit.ups import action, workitem
from workflow.config import ClientAE, RemoteAE
from workflow.dimse.nodelay import NoDelayAE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("/usr/bin/echoscu"):
        if REQUIRE_ORTHANC:
            pytest.fail("dcmtk is not installed (.ci/run installs it)")
        pytest.skip("dcmtk is not installed: apt-get install dcmtk")
    return make_pki(tmp_path_factory.mktemp("pki"))


class Subscriber:
    """A UPS event subscriber listening over DICOM TLS (pynetdicom with the hospital's certificate)."""

    def __init__(self, pki) -> None:
        self.reports: list = []
        self.ae = NoDelayAE(ae_title="TLSSUB")
        self.ae.add_supported_context(UnifiedProcedureStepEvent)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server.certificate, pki.server.key)
        self.port = free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, ssl_context=context,
                                           evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])

    def _on_report(self, event):
        self.reports.append(event.request.EventTypeID)
        return 0x0000, None


@pytest.fixture(scope="module")
def subscriber(pki):
    subscriber = Subscriber(pki)
    yield subscriber
    subscriber.server.shutdown()


@pytest.fixture(scope="module")
def app(database_url, pki, syslog_receiver, subscriber):
    clients = (ClientAE("CT1", ("notify", "query", "schedule", "watch"), ("127.0.0.0/8",), "CN=ct1,O=Hospital"),
               ClientAE("CT2", ("notify",), (), "CN=someone-else,O=Hospital"))
    with http_app(database_url, tls_port=free_port(), https_port=free_port(), tls_certificate=pki.server.certificate,
                  tls_private_key=pki.server.key, tls_ca_certificates=pki.ca, artim_timeout=2.0,
                  client_ae=clients, audit_repository=f"tcp://127.0.0.1:{syslog_receiver.port}",
                  remote_ae=(RemoteAE("TLSSUB", "127.0.0.1", subscriber.port, tls=True),),
                  event_retry_initial=0.2, event_retry_max_interval=0.5) as app:
        yield app


def dcmtk(tool: str, app, *options: str, calling: str = "CT1", files: tuple[str, ...] = ()):
    return subprocess.run([f"/usr/bin/{tool}", *options, "-aet", calling, "-aec", "WFM", "127.0.0.1", str(app.dicom.tls_port),
                           *files], capture_output=True, text=True, timeout=60)


def authenticated(pki, pair=None) -> tuple[str, ...]:
    pair = pair or pki.client
    return ("+tls", pair.key, pair.certificate, "+cf", pki.ca)


def test_dcmtk_echo_over_tls(app, pki):
    echo = dcmtk("echoscu", app, *authenticated(pki))
    assert echo.returncode == 0, echo.stderr


def test_plain_tcp_to_the_tls_port_is_refused_and_alerted(app, syslog_receiver):
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", app.dicom.tls_port, ae_title="WFM")
    assert not assoc.is_established
    assert security_alerts(syslog_receiver, "TLS handshake with 127.0.0.1")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(app, pki, version):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca)
    context.load_cert_chain(pki.client.certificate, pki.client.key)
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", app.dicom.tls_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="localhost")


def test_client_without_certificate_is_refused(app, pki, syslog_receiver):
    result = dcmtk("echoscu", app, "+tla", "+cf", pki.ca)
    assert result.returncode != 0
    assert security_alerts(syslog_receiver, "certificate")


def test_client_certificate_from_another_ca_is_refused(app, pki):
    result = dcmtk("echoscu", app, *authenticated(pki, pki.stranger))
    assert result.returncode != 0


def test_certificate_subject_must_match_the_client_ae(app, pki, syslog_receiver):
    # CT2 is listed with another subject: CT1's certificate does not make it CT2.
    result = dcmtk("echoscu", app, *authenticated(pki), calling="CT2")
    assert result.returncode != 0 and "reject" in (result.stderr + result.stdout).lower()
    assert security_alerts(syslog_receiver, "certificate subject")


def test_a_stalled_handshake_blocks_nobody_and_is_dropped(app, pki):
    stalled = socket.create_connection(("127.0.0.1", app.dicom.tls_port), timeout=10)
    try:
        started = time.monotonic()
        echo = dcmtk("echoscu", app, *authenticated(pki))
        assert echo.returncode == 0, echo.stderr
        assert time.monotonic() - started < 2.0  # not waiting for the stalled peer's ARTIM (2 s)
        stalled.settimeout(10)
        assert stalled.recv(1) == b""  # closed by the server once artim_timeout passed
    finally:
        stalled.close()


def test_events_go_to_a_tls_subscriber_over_tls(app, pki, subscriber):
    context = ssl.create_default_context(cafile=pki.ca)
    context.load_cert_chain(pki.client.certificate, pki.client.key)
    ae = NoDelayAE(ae_title="CT1")
    ae.add_requested_context(UnifiedProcedureStepPush)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", app.dicom.tls_port, ae_title="WFM", tls_args=(context, "localhost"))
    assert assoc.is_established
    try:
        uid = generate_uid()
        status = action(assoc, "1.2.840.10008.5.1.4.34.5", 3, meta=UnifiedProcedureStepPush,
                        ReceivingAE="TLSSUB", DeletionLock="FALSE")
        assert status.Status == 0
        assert assoc.send_n_create(workitem(), UnifiedProcedureStepPush, uid)[0].Status == 0
    finally:
        assoc.release()
    deadline = time.monotonic() + 20
    while 1 not in subscriber.reports and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 1 in subscriber.reports  # a UPS State Report, delivered over TLS


def test_https_serves_the_api_with_the_same_certificate(app, pki):
    with httpx.Client(base_url=f"https://127.0.0.1:{app.http.tls_port}", verify=pki.ca, timeout=10) as https:
        assert https.get("/api/health").status_code == 200
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca)
    old.set_ciphers("ALL:@SECLEVEL=0")
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with httpx.Client(base_url=f"https://127.0.0.1:{app.http.tls_port}", verify=old, timeout=10) as https:
        with pytest.raises(httpx.ConnectError):
            https.get("/api/health")


def test_failed_https_handshakes_are_alerted_and_block_nobody(app, pki, syslog_receiver):
    with socket.create_connection(("127.0.0.1", app.http.tls_port), timeout=10) as plain:  # HTTP, not TLS
        plain.sendall(b"GET /api/health HTTP/1.1\r\nHost: wfm\r\n\r\n")
        assert plain.recv(100) == b""  # closed without an answer
        assert security_alerts(syslog_receiver, f"HTTPS handshake with 127.0.0.1:{plain.getsockname()[1]} "
                                                "failed: http request")
    stalled = socket.create_connection(("127.0.0.1", app.http.tls_port), timeout=10)  # says nothing
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{app.http.tls_port}", verify=pki.ca, timeout=10) as https:
            assert https.get("/api/health").status_code == 200  # served meanwhile
        assert security_alerts(syslog_receiver, f"HTTPS handshake with 127.0.0.1:{stalled.getsockname()[1]} "
                                                "failed: no handshake within 2 s (artim_timeout)")
        assert stalled.recv(100) == b""  # dropped
    finally:
        stalled.close()


def test_https_serves_one_new_connection_after_another(app, pki):
    """The first request's bytes can reach the server with the handshake's last: none is lost."""
    context = ssl.create_default_context(cafile=pki.ca)
    for _ in range(40):
        with httpx.Client(base_url=f"https://127.0.0.1:{app.http.tls_port}", verify=context, timeout=10) as https:
            assert https.get("/api/health").status_code == 200
