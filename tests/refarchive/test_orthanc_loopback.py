"""The tests' Orthanc listens on the loopback address only (Orthanc itself binds every interface; the
tests run it with a shim that makes its binds loopback ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.orthanc import OrthancServer, require_orthanc

pytestmark = pytest.mark.slow


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* write them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_orthanc_listens_on_loopback_only():
    require_orthanc()
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    with OrthancServer(aet="LOOPBACK") as orthanc:
        for port in (orthanc.http_port, orthanc.dicom_port):
            addresses = listening_addresses(port)
            assert addresses and addresses <= loopback, (port, addresses)
