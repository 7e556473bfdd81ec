"""A raw DICOM Upper Layer client for replaying pre-encoded N-CREATE requests (benchmarks only).

pynetdicom costs milliseconds of client CPU per request, which caps what a benchmark on a small
machine can measure. This module speaks just enough of PS3.8 (the Upper Layer protocol) and PS3.7
(the DIMSE command set) over a plain TCP socket to send N-CREATE-RQs whose data sets the caller has
already encoded, and read back their status: per request it packs a ~100-byte command set and a few
PDU headers, copies the data set once into the outgoing buffer and parses the response's group 0000.

    with RawAssociation("127.0.0.1", 11112, "WFM", "BENCH", "1.2.840.10008.5.1.4.33") as assoc:
        status = assoc.n_create("1.2.840.10008.5.1.4.33", instance_uid, encoded_dataset)

What it does not do: asynchronous operations (one request outstanding at a time), more than one
presentation context, role selection or any other extended negotiation, DIMSE services other than
N-CREATE (no C-ECHO, C-STORE, C-FIND, ...), encoding or checking data sets (the bytes are sent as
given: they must be encoded in the negotiated transfer syntax), responses' data sets (read and
discarded), TLS, and answering a peer's A-RELEASE-RQ (it raises instead). Not for production use.
"""

from __future__ import annotations

import socket
import struct
from typing import NoReturn

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1"
IMPLEMENTATION_VERSION_NAME = "WFM_RAWSCU_1"

_CONTEXT_ID = 1
_N_CREATE_RQ = 0x0140
_NO_DATA_SET = 0x0101

_PDU_HEADER = struct.Struct(">BBI")            # PDU type, reserved, PDU length
_PDATA_HEADER = struct.Struct(">BBIIBB")       # P-DATA-TF header + first PDV item header
_PDV_HEADER = struct.Struct(">IBB")            # PDV item length, context id, message control header
_ITEM_HEADER = struct.Struct(">BBH")           # item type, reserved, item length
_ELEMENT_HEADER = struct.Struct("<HHI")        # implicit VR LE: group, element, value length
_US = struct.Struct("<HHIH")                   # a whole US element in implicit VR LE
_UL = struct.Struct("<HHII")                   # a whole UL element in implicit VR LE
_U16 = struct.Struct("<H")

_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
_RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"
_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00"   # source 0: service user, reason 0

_REJECT_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
_REJECT_SOURCES = {1: "service-user", 2: "service-provider (ACSE)", 3: "service-provider (presentation)"}
_CONTEXT_RESULTS = {1: "user-rejection", 2: "no-reason (provider rejection)",
                    3: "abstract-syntax-not-supported", 4: "transfer-syntaxes-not-supported"}


class RawAssociationError(Exception):
    """The association failed or was aborted, or the peer broke the protocol."""


class RawAssociationRejected(RawAssociationError):
    """The peer answered the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result, self.source, self.reason = result, source, reason
        super().__init__(f"association rejected: result {result} ({_REJECT_RESULTS.get(result, '?')}), "
                         f"source {source} ({_REJECT_SOURCES.get(source, '?')}), reason {reason}")


def _ae(title: str, what: str) -> bytes:
    raw = title.encode("ascii")
    if not 0 < len(raw) <= 16:
        raise ValueError(f"{what} AE title must be 1 to 16 characters: {title!r}")
    return raw.ljust(16, b" ")


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM_HEADER.pack(item_type, 0, len(value)) + value


def _ui(element: int, uid: str) -> bytes:
    """A UI element of group 0000 in implicit VR little endian, NUL-padded to even length."""
    raw = uid.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00"
    return _ELEMENT_HEADER.pack(0x0000, element, len(raw)) + raw


def _abort_description(body: bytes) -> str:
    source, reason = (body[2], body[3]) if len(body) >= 4 else (-1, -1)
    return f"A-ABORT from the peer (source {source}, reason {reason})"


class RawAssociation:
    """One association with one presentation context, sending N-CREATE-RQs one at a time."""

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str,
                 abstract_syntax: str, transfer_syntax: str = IMPLICIT_VR_LITTLE_ENDIAN,
                 timeout: float = 60.0) -> None:
        self.abstract_syntax = abstract_syntax
        self.transfer_syntax = transfer_syntax
        self.peer_max_length = 0          # the peer's Maximum Length (0: unlimited)
        self._message_id = 0
        self._rbuf = bytearray()
        self._sock: socket.socket | None = None
        rq = self._associate_rq(_ae(called_ae, "called"), _ae(calling_ae, "calling"))
        self._sock = self._connect(host, port, timeout)
        try:
            self._send(rq)
            self._read_associate_answer()
        except BaseException:
            self._close()
            raise
        # One PDV per P-DATA-TF PDU: a PDU's variable field is the PDV item (4 + 2 + fragment).
        self._fragment = self.peer_max_length - 6 if self.peer_max_length else 0

    # ------------------------------------------------------------------ association establishment

    @staticmethod
    def _connect(host: str, port: int, timeout: float) -> socket.socket:
        error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(timeout)
                sock.connect(address)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise RawAssociationError(f"cannot connect to {host}:{port}: {error}") from error

    def _associate_rq(self, called: bytes, calling: bytes) -> bytes:
        context = _item(0x20, bytes([_CONTEXT_ID, 0, 0, 0])
                        + _item(0x30, self.abstract_syntax.encode("ascii"))
                        + _item(0x40, self.transfer_syntax.encode("ascii")))
        user = _item(0x50, _item(0x51, struct.pack(">I", 0))
                     + _item(0x52, IMPLEMENTATION_CLASS_UID.encode("ascii"))
                     + _item(0x55, IMPLEMENTATION_VERSION_NAME.encode("ascii")))
        body = (struct.pack(">HH", 1, 0) + called + calling + bytes(32)
                + _item(0x10, APPLICATION_CONTEXT.encode("ascii")) + context + user)
        return _PDU_HEADER.pack(0x01, 0, len(body)) + body

    def _read_associate_answer(self) -> None:
        pdu_type, body = self._read_pdu()
        if pdu_type == 0x03:
            if len(body) < 4:
                raise RawAssociationError("malformed A-ASSOCIATE-RJ")
            raise RawAssociationRejected(body[1], body[2], body[3])
        if pdu_type == 0x07:
            raise RawAssociationError(_abort_description(body) + " during association")
        if pdu_type != 0x02:
            raise RawAssociationError(f"expected A-ASSOCIATE-AC, got PDU type 0x{pdu_type:02x}")
        context_result: int | None = None
        accepted_syntax = b""
        offset = 68                                   # the variable items follow the fixed fields
        while offset + 4 <= len(body):
            item_type, _, length = _ITEM_HEADER.unpack_from(body, offset)
            value = body[offset + 4:offset + 4 + length]
            offset += 4 + length
            if item_type == 0x21 and len(value) >= 4 and value[0] == _CONTEXT_ID:
                context_result = value[2]
                sub = 4
                while sub + 4 <= len(value):
                    sub_type, _, sub_length = _ITEM_HEADER.unpack_from(value, sub)
                    if sub_type == 0x40:
                        accepted_syntax = value[sub + 4:sub + 4 + sub_length]
                    sub += 4 + sub_length
            elif item_type == 0x50:
                sub = 0
                while sub + 4 <= len(value):
                    sub_type, _, sub_length = _ITEM_HEADER.unpack_from(value, sub)
                    if sub_type == 0x51 and sub_length == 4:
                        self.peer_max_length = struct.unpack_from(">I", value, sub + 4)[0]
                    sub += 4 + sub_length
        if context_result is None:
            self._abort_quietly()
            raise RawAssociationError("A-ASSOCIATE-AC without presentation context 1")
        if context_result != 0:
            self._abort_quietly()
            raise RawAssociationError(f"presentation context refused: result {context_result} "
                                      f"({_CONTEXT_RESULTS.get(context_result, '?')})")
        accepted = accepted_syntax.rstrip(b"\x00 ").decode("ascii", "replace")
        if accepted != self.transfer_syntax:
            self._abort_quietly()
            raise RawAssociationError(f"peer accepted transfer syntax {accepted!r}, "
                                      f"not the proposed {self.transfer_syntax!r}")
        if 0 < self.peer_max_length < 8:
            self._abort_quietly()
            raise RawAssociationError(f"peer's maximum length {self.peer_max_length} is unusable")

    # ------------------------------------------------------------------ DIMSE

    def n_create(self, sop_class_uid: str, sop_instance_uid: str, dataset: bytes) -> int:
        """Send one N-CREATE-RQ with `dataset` (already encoded) and return the response's Status."""
        if self._sock is None:
            raise RawAssociationError("the association is closed")
        message_id = self._message_id = self._message_id % 0xFFFF + 1
        elements = (_ui(0x0002, sop_class_uid)
                    + _US.pack(0x0000, 0x0100, 2, _N_CREATE_RQ)
                    + _US.pack(0x0000, 0x0110, 2, message_id)
                    + _US.pack(0x0000, 0x0800, 2, 0x0000)
                    + _ui(0x1000, sop_instance_uid))
        command = _UL.pack(0x0000, 0x0000, 4, len(elements)) + elements
        parts: list = []
        self._pdata(parts, command, 0x01)
        self._pdata(parts, dataset, 0x00)
        self._send(b"".join(parts))
        return self._read_response(message_id)

    def _pdata(self, parts: list, data: bytes, command_bit: int) -> None:
        """Append P-DATA-TF PDUs (one PDV each) carrying `data` as command (1) or data set (0)."""
        size = len(data)
        fragment = self._fragment
        if not fragment or size <= fragment:         # the common case: a single fragment
            parts.append(_PDATA_HEADER.pack(0x04, 0, size + 6, size + 2, _CONTEXT_ID, command_bit | 0x02))
            parts.append(data)
            return
        view = memoryview(data)
        for start in range(0, size, fragment):
            chunk = view[start:start + fragment]
            last = 0x02 if start + fragment >= size else 0x00
            parts.append(_PDATA_HEADER.pack(0x04, 0, len(chunk) + 6, len(chunk) + 2, _CONTEXT_ID,
                                            command_bit | last))
            parts.append(chunk)

    def _read_response(self, message_id: int) -> int:
        command_parts: list[bytes] = []
        status = 0
        data_set_follows: bool | None = None        # None until the command set is complete
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type != 0x04:
                self._unexpected(pdu_type, body, "while waiting for an N-CREATE-RSP")
            offset, end = 0, len(body)
            while offset < end:
                if offset + 6 > end:
                    self._protocol_error("truncated PDV item")
                length, _, control = _PDV_HEADER.unpack_from(body, offset)
                if length < 2 or offset + 4 + length > end:
                    self._protocol_error(f"bad PDV item length {length}")
                fragment = body[offset + 6:offset + 4 + length]
                offset += 4 + length
                if control & 0x01:                    # command fragment
                    if data_set_follows is not None:
                        self._protocol_error("command fragment after the last command fragment")
                    command_parts.append(fragment)
                    if control & 0x02:
                        command = command_parts[0] if len(command_parts) == 1 else b"".join(command_parts)
                        status, responded_to, data_set_type = self._decode_command(command)
                        if responded_to != message_id:
                            self._protocol_error(f"response to message {responded_to}, "
                                                 f"expected {message_id}")
                        data_set_follows = data_set_type != _NO_DATA_SET
                        if not data_set_follows:
                            return status
                else:                                 # data set fragment: read and discarded
                    if not data_set_follows:
                        self._protocol_error("unexpected data set fragment")
                    if control & 0x02:
                        return status

    def _decode_command(self, command: bytes) -> tuple[int, int, int]:
        """Status, MessageIDBeingRespondedTo and CommandDataSetType from an implicit VR LE group 0000."""
        status = responded_to = data_set_type = None
        offset, end = 0, len(command)
        while offset + 8 <= end:
            group, element, length = _ELEMENT_HEADER.unpack_from(command, offset)
            offset += 8
            if group != 0x0000 or offset + length > end:
                break
            if length == 2:
                if element == 0x0900:
                    status = _U16.unpack_from(command, offset)[0]
                elif element == 0x0120:
                    responded_to = _U16.unpack_from(command, offset)[0]
                elif element == 0x0800:
                    data_set_type = _U16.unpack_from(command, offset)[0]
            offset += length
        if status is None or responded_to is None or data_set_type is None:
            self._protocol_error("response command set without Status, MessageIDBeingRespondedTo "
                                 "or CommandDataSetType")
        return status, responded_to, data_set_type

    # ------------------------------------------------------------------ release, abort, close

    def release(self) -> None:
        """A-RELEASE-RQ, wait for the A-RELEASE-RP, close. P-DATA arriving meanwhile is discarded."""
        if self._sock is None:
            return
        try:
            self._send(_RELEASE_RQ)
            while True:
                pdu_type, body = self._read_pdu()
                if pdu_type == 0x06:
                    return
                if pdu_type == 0x07:
                    raise RawAssociationError(_abort_description(body) + " during release")
                if pdu_type == 0x05:                  # release collision: as requestor, answer first
                    self._send(_RELEASE_RP)
                    continue
                if pdu_type != 0x04:
                    raise RawAssociationError(f"unexpected PDU type 0x{pdu_type:02x} during release")
        finally:
            self._close()

    def abort(self) -> None:
        """Send an A-ABORT (if still connected) and close. Never raises."""
        self._abort_quietly()

    def __enter__(self) -> RawAssociation:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()

    def _abort_quietly(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendall(_ABORT)
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _unexpected(self, pdu_type: int, body: bytes, when: str) -> NoReturn:
        if pdu_type == 0x07:
            self._close()
            raise RawAssociationError(f"{_abort_description(body)} {when}")
        if pdu_type == 0x05:
            self._abort_quietly()
            raise RawAssociationError(f"A-RELEASE-RQ from the peer {when}")
        self._protocol_error(f"unexpected PDU type 0x{pdu_type:02x} {when}")

    def _protocol_error(self, message: str) -> NoReturn:
        self._abort_quietly()
        raise RawAssociationError(message)

    # ------------------------------------------------------------------ transport

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise RawAssociationError("the association is closed")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._close()
            raise RawAssociationError(f"send failed: {exc}") from exc

    def _read_pdu(self) -> tuple[int, bytes]:
        pdu_type, _, length = _PDU_HEADER.unpack(self.recv_exact(6))
        return pdu_type, self.recv_exact(length)

    def recv_exact(self, n: int) -> bytes:
        """Exactly `n` bytes from the socket (buffered: usually one recv per PDU, not two)."""
        buf, sock = self._rbuf, self._sock
        if sock is None:
            raise RawAssociationError("the association is closed")
        while len(buf) < n:
            try:
                chunk = sock.recv(max(n - len(buf), 65536))
            except OSError as exc:        # includes timeouts
                self._close()
                raise RawAssociationError(f"receive failed: {exc!r}") from exc
            if not chunk:
                self._close()
                raise RawAssociationError("connection closed by the peer")
            buf += chunk
        data = bytes(buf[:n])
        del buf[:n]
        return data
