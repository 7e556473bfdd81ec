"""TLS contexts, built once from the settings and handed to both faces (the DICOM TLS listener, HTTPS) and
to outgoing associations: PS3.15 Annex B's BCP 195 profile (RFC 9325): TLS 1.2 or newer, with TLS 1.2
limited to the profile's AEAD suites (ECDHE/DHE with AES-GCM), no fallback to anything older."""

from __future__ import annotations

import socket
import ssl

from workflow.config import Settings

# The BCP 195 cipher suites for TLS 1.2 (TLS 1.3's are AEAD only and always on).
BCP195_TLS12 = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
))


def _profile(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_TLS12)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(settings: Settings, client_certificates: bool = True) -> ssl.SSLContext:
    """Our side of an accepted TLS connection: our certificate; the client's certificate verified against
    `tls_ca_certificates` and, with `tls_require_client_certificate`, required. HTTPS asks for none
    (`client_certificates=False`): its clients are browsers and scripts that authenticate by token."""
    context = _profile(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    if settings.tls_ca_certificates and client_certificates:
        context.load_verify_locations(settings.tls_ca_certificates)
        context.verify_mode = ssl.CERT_REQUIRED if settings.tls_require_client_certificate else ssl.CERT_OPTIONAL
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """Our side of an outgoing TLS association (`tls = true` remotes): the peer verified against
    `tls_ca_certificates`; our certificate offered when we have one."""
    context = _profile(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if settings.tls_ca_certificates:
        context.load_verify_locations(settings.tls_ca_certificates)
    else:
        context.load_default_certs()
    if settings.tls_certificate:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    return context


def outgoing(settings: Settings, remote) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's `tls_args` for an association to `remote` (a [[remote_ae]] or reconciliation target):
    (context, host name to verify) when it says `tls = true`, else None (plain TCP)."""
    if not getattr(remote, "tls", False):
        return None
    return client_context(settings), remote.host


def subject_text(peer_certificate: dict | None) -> str:
    """A certificate's subject as `CN=...,O=...` (the form `certificate_subject` is written in)."""
    if not peer_certificate:
        return ""
    parts = []
    for rdn in peer_certificate.get("subject", ()):
        for key, value in rdn:
            short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                     "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}.get(key, key)
            parts.append(f"{short}={value}")
    return ",".join(parts)


def handshake_failure(exc: BaseException, timeout: float) -> str:
    """Why a TLS handshake we accepted failed, as a log line and a Security Alert say it."""
    # asyncio's handshake timeout is a ConnectionAbortedError saying "... is taking longer than ...".
    if isinstance(exc, (socket.timeout, TimeoutError)) or "taking longer than" in str(exc):
        return f"no handshake within {timeout:g} s (artim_timeout)"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or "").replace("_", " ").lower() or exc.strerror or str(exc)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
