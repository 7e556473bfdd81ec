"""Encode DICOM JSON straight to Little Endian bytes, for the large sequences of DIMSE responses.

A workitem's Input Information Sequence can list 10,000 instances; turning that into a pydicom Dataset
(`Dataset.from_json`) and encoding it costs ~2 s, this ~0.05 s. `response_dataset` keeps pydicom for the
small attributes and hands pynetdicom the big sequences as raw elements, which pydicom writes as they
are. Only what can be encoded exactly is encoded here: ASCII text, numbers and sequences; anything else
(binary VRs, bulk data, non-ASCII text, which would need the Specific Character Set) raises
`NotEncodable`, and the caller falls back to pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

JsonDataset = dict[str, Any]

_TEXT = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_BINARY = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}
_LONG_HEADER = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
# Encode a sequence this way once it has at least this many items (below, pydicom is fast enough).
LARGE_SEQUENCE = 50


class NotEncodable(ValueError):
    """A value this encoder does not handle exactly; use pydicom for it."""


def _value_bytes(vr: str, element: dict) -> bytes:
    values = element.get("Value") or []
    if "InlineBinary" in element or "BulkDataURI" in element:
        raise NotEncodable("binary value")
    if vr in ("DS", "IS") and any(isinstance(v, float) for v in values):
        raise NotEncodable("a decimal number (pydicom chooses its text form)")
    if vr in _BINARY:
        return b"".join(struct.pack(_BINARY[vr], v) for v in values)
    if vr not in _TEXT:
        raise NotEncodable(f"VR {vr}")
    if vr == "PN":
        parts = []
        for v in values:
            if set(v) - {"Alphabetic"}:
                raise NotEncodable("PN with ideographic or phonetic groups")
            # Trailing "=" are empty component groups, which pydicom leaves out (PS3.5 6.2).
            parts.append(v.get("Alphabetic", "").rstrip("="))
        values = parts
    text = "\\".join("" if v is None else str(v) for v in values)
    if not text.isascii():
        raise NotEncodable("non-ASCII text")
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def _element(tag: str, element: dict, implicit: bool) -> bytes:
    vr = element.get("vr")
    if not vr:
        raise NotEncodable(f"{tag} without a VR")
    value = sequence_bytes(element.get("Value") or [], implicit) if vr == "SQ" else _value_bytes(vr, element)
    head = struct.pack("<HH", int(tag[:4], 16), int(tag[4:], 16))
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    if vr in _LONG_HEADER:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", len(value)) + value
    if len(value) > 0xFFFF:
        raise NotEncodable(f"{tag} too long for a short explicit VR length")
    return head + vr.encode() + struct.pack("<H", len(value)) + value


def dataset_bytes(ds: JsonDataset, implicit: bool) -> bytes:
    return b"".join(_element(tag, ds[tag], implicit) for tag in sorted(ds) if not tag.startswith("0000"))


def sequence_bytes(items: list[JsonDataset], implicit: bool) -> bytes:
    """The value of an SQ element: items of defined length."""
    out = []
    for item in items:
        body = dataset_bytes(item, implicit)
        out.append(_ITEM + struct.pack("<I", len(body)) + body)
    return b"".join(out)


def response_dataset(ds: JsonDataset, implicit: bool) -> Dataset:
    """A Dataset for pynetdicom to send in the negotiated Little Endian transfer syntax: large
    sequences pre-encoded as raw elements, the rest through pydicom."""
    large = {tag: el for tag, el in ds.items()
             if el.get("vr") == "SQ" and len(el.get("Value") or []) >= LARGE_SEQUENCE}
    raw = {}
    for tag, element in large.items():
        try:
            raw[tag] = sequence_bytes(element["Value"], implicit)
        except NotEncodable:
            continue
    out = Dataset.from_json({tag: el for tag, el in ds.items() if tag not in raw})
    for tag, value in raw.items():
        t = Tag(int(tag, 16))
        out[t] = RawDataElement(t, None if implicit else "SQ", len(value), value, 0, implicit, True)
    # Raw elements are written as they are only when the data set says it is in that encoding.
    out.set_original_encoding(implicit, True, out._character_set)
    return out


class Encoded(Dataset):
    """A response data set already encoded (`encoded`, in the transfer syntax `implicit` names, Little
    Endian): pynetdicom sends the bytes as they are (see `install`), skipping pydicom's writer, which
    costs ~1 ms for a workitem; this encoder ~0.04 ms. Empty as a pydicom Dataset: only for handing to
    pynetdicom."""

    def __init__(self, encoded: bytes, implicit: bool) -> None:
        super().__init__()
        self.__dict__["encoded"], self.__dict__["implicit"] = encoded, implicit

    def __bool__(self) -> bool:
        # pynetdicom sends a response's data set only `if ds` (an Encoded has no pydicom elements), and
        # announces one (Command Data Set Type) whenever it does: zero bytes must be no data set at all,
        # else the requester waits for a data set that never comes.
        return bool(self.__dict__["encoded"])


def encoded_or_none(ds: JsonDataset, implicit: bool) -> Encoded | None:
    try:
        return Encoded(dataset_bytes(ds, implicit), implicit)
    except NotEncodable:
        return None


def install() -> None:
    """Teach pynetdicom to send an `Encoded` data set as it is, in responses (its service classes) and in
    the requests an association sends (N-EVENT-REPORT's Event Information): once per process."""
    from pynetdicom import association, service_class

    for module in (service_class, association):
        original = module.encode
        if getattr(original, "wfm_encoded", False):
            continue
        module.encode = _as_is(original)


def _as_is(original):
    def encode(ds, is_implicit_vr, is_little_endian, deflated=False):
        if isinstance(ds, Encoded) and ds.implicit == is_implicit_vr and is_little_endian and not deflated:
            return ds.encoded
        return original(ds, is_implicit_vr, is_little_endian, deflated)

    encode.wfm_encoded = True
    return encode
