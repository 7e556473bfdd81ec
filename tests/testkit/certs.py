"""Certificates for the TLS tests, made with Debian's `openssl` as an administrator would: a hospital CA,
the server's certificate (for 127.0.0.1 and localhost), a modality's client certificate, and a client
certificate from a CA nobody trusts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.orthanc import REQUIRE_ORTHANC as REQUIRE_PEERS  # CI: every real peer is installed


@dataclass(frozen=True)
class Pair:
    certificate: str
    key: str


@dataclass(frozen=True)
class Pki:
    ca: str  # the hospital CA's certificate (PEM)
    server: Pair  # CN=wfm, for 127.0.0.1 and localhost
    client: Pair  # CN=ct1,O=Hospital, signed by the hospital CA
    other_client: Pair  # CN=ct2,O=Hospital
    stranger: Pair  # CN=ct1,O=Hospital, signed by another CA


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}/O=Hospital", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return cert, key


def _leaf(directory: Path, name: str, subject: str, ca: tuple[Path, Path], extensions: str) -> Pair:
    key, csr, cert, ext = (directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem",
                           directory / f"{name}.ext")
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject,
             cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=directory)
    return Pair(str(cert), str(key))


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        if REQUIRE_PEERS:
            pytest.fail("openssl is not installed (.ci/run installs it)")
        pytest.skip("openssl is not installed: apt-get install openssl")
    directory.mkdir(parents=True, exist_ok=True)
    hospital, other = _ca(directory, "hospital-ca"), _ca(directory, "other-ca")
    client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    return Pki(
        ca=str(hospital[0]),
        server=_leaf(directory, "server", "/CN=wfm/O=Hospital", hospital,
                     "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                     "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        client=_leaf(directory, "ct1", "/CN=ct1/O=Hospital", hospital, client_ext),
        other_client=_leaf(directory, "ct2", "/CN=ct2/O=Hospital", hospital, client_ext),
        stranger=_leaf(directory, "stranger", "/CN=ct1/O=Hospital", other, client_ext),
    )
