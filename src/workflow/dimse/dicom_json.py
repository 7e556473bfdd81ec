"""Decode DIMSE data set bytes straight to the DICOM JSON model (PS3.18 F.2), fast.

The reference is pydicom 3.0.2 with default settings: ``pynetdicom.dsutils.decode``
then ``Dataset.to_json_dict()``, odd corners included (several empty strings stay
``""``, an empty SQ has ``"Value": []``).  Implicit and Explicit VR Little Endian
are decoded by hand; what that cannot reproduce goes to pydicom: other transfer
syntaxes and character sets, ISO 2022 escapes, a character set inside an item,
undefined-length non-SQ elements, explicit UN that pydicom re-types, ambiguous VRs
beyond the US/SS and OB/OW ones pydicom settles without pixel data, and values
pydicom rejects or repairs.

Deliberate differences, for malformed input only: a truncated header or value, a
length past its container, an item or delimiter tag out of place, an item whose
content overruns it, a non-item tag in a sequence, a sequence delimiter in a
defined-length sequence and nesting deeper than ``_MAX_DEPTH`` raise DecodeError,
where pydicom drops a trailing partial header, keeps a short value, stops at a
stray item delimiter or reads a non-item tag as if it were an item.  (Data sets
that go to pydicom keep its leniency.)
"""

from __future__ import annotations

import base64
import struct
from functools import lru_cache
from io import BytesIO

from pydicom import config
from pydicom.datadict import DicomDictionary, dictionary_VR, private_dictionary_VR
from pydicom.dataelem import _LUT_DESCRIPTOR_TAGS
from pydicom.filewriter import _AMBIGUOUS_OB_OW_TAGS, _AMBIGUOUS_US_SS_TAGS, _OVERLAY_DATA_TAGS
from pydicom.hooks import hooks, raw_element_value, raw_element_vr
from pydicom.uid import UID
from pynetdicom.dsutils import decode

__all__ = ["DecodeError", "dataset_bytes_to_json"]

IMPLICIT_VR_LE, EXPLICIT_VR_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
_UNDEFINED, _ITEM, _ITEM_END, _SEQ_END = 0xFFFFFFFF, 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 100  # pydicom itself manages ~200 levels before a RecursionError
_HHL, _HH2sH = struct.Struct("<HHL").unpack_from, struct.Struct("<HH2sH").unpack_from
_L = struct.Struct("<L").unpack_from
_DICT_GET = DicomDictionary.get
_KEYS: dict[int, str] = {}  # tag -> "GGGGEEEE"; formatting costs more than a UI value
_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_CHARSET_DEPENDENT = {"SH", "LO", "UC", "ST", "LT", "UT", "PN", "SQ"}


class DecodeError(ValueError):
    """The bytes are not a decodable data set. str(e) is a short reason (<= 60 chars,
    suitable for a DIMSE Error Comment)."""


class _Fallback(Exception):
    """The fast path cannot reproduce pydicom here; let pydicom decode."""


def dataset_bytes_to_json(raw: bytes, transfer_syntax_uid: str) -> dict:
    """Return the DICOM JSON model of `raw`, an encoded data set without file meta."""
    raw = raw if isinstance(raw, bytes) else bytes(raw)
    ts = str(transfer_syntax_uid).rstrip("\0 ")
    if ts in (IMPLICIT_VR_LE, EXPLICIT_VR_LE) and _pydicom_is_default():
        try:
            return _fast_json(raw, ts == IMPLICIT_VR_LE)
        except DecodeError:
            raise
        except Exception:  # _Fallback, or a bug here: pydicom is the reference
            pass
    return _pydicom_json(raw, ts)


def _pydicom_is_default() -> bool:
    """The fast path mirrors pydicom's default reading settings only."""
    return (
        config.settings.reading_validation_mode != config.RAISE
        and config.replace_un_with_known_vr
        and not (config.use_none_as_empty_text_VR_value or config.datetime_conversion)
        and not (config.use_DS_decimal or config.use_DS_numpy or config.use_IS_numpy)
        and not (config.data_element_callback or hooks.raw_element_kwargs)
        and hooks.raw_element_vr is raw_element_vr
        and hooks.raw_element_value is raw_element_value
    )


def _pydicom_json(raw: bytes, ts: str) -> dict:
    try:
        uid = UID(ts)
        flags = (uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)
    except Exception:
        raise DecodeError("unsupported transfer syntax") from None
    try:
        return decode(BytesIO(raw), *flags).to_json_dict()
    except Exception as exc:
        # An Error Comment is LO: default repertoire, no backslash
        reason = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in f"{exc}")
        raise DecodeError(f"{type(exc).__name__}: {reason}"[:60]) from exc


def _fast_json(raw: bytes, implicit: bool) -> dict:
    """The hand-written decoder; raises _Fallback where pydicom must decide."""
    # pydicom switches to explicit VR if an implicit data set looks explicit
    if implicit and len(raw) >= 6 and 0x40 < raw[4] < 0x5B and 0x40 < raw[5] < 0x5B:
        raise _Fallback
    dec = _Decoder(raw, implicit)
    out = dec.dataset(0, len(raw), 0, False)[0]
    # An ambiguous US/SS became US as there is no (0028,0103) Pixel Representation
    if dec.us_ss and b"\x28\x00\x03\x01" in raw:
        raise _Fallback
    return out


class _Decoder:
    def __init__(self, buf: bytes, implicit: bool) -> None:
        self.buf, self.implicit = buf, implicit
        self.enc = "latin_1"  # pydicom's default "iso8859" is Latin-1
        self.charset_seen = self.us_ss = False

    def dataset(self, pos: int, end: int, depth: int, undefined: bool) -> tuple[dict, int]:
        """Decode buf[pos:end]; an undefined-length item ends at (FFFE,E00D)."""
        buf, implicit, enc = self.buf, self.implicit, self.enc
        out: dict = {}
        creators: dict = {}  # private creator tag -> name (None: was missing when needed)
        while True:
            if pos >= end:
                if undefined:
                    raise DecodeError(f"item delimiter missing at offset {pos}")
                return out, pos
            if pos + 8 > end:
                raise DecodeError(f"truncated element header at offset {pos}")
            if implicit:
                group, elem, length = _HHL(buf, pos)
            else:
                group, elem, vrb, length = _HH2sH(buf, pos)
            tag, start = group << 16 | elem, pos
            if group == 0xFFFE:  # item tags carry no VR, even in explicit VR
                if tag == _ITEM_END and undefined:
                    if _L(buf, pos + 4)[0]:
                        raise _Fallback  # pydicom reads a non-zero length oddly
                    return out, pos + 8
                raise DecodeError(f"unexpected ({group:04X},{elem:04X}) at offset {pos}")
            if implicit:
                pos += 8
                entry = _DICT_GET(tag)
                vr = entry[0] if entry is not None else _nondict_vr(tag)
            else:
                vr = _EXPLICIT_VRS.get(vrb)
                if vr is None:
                    raise _Fallback  # unknown VR, or implicit VR inside explicit data
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise DecodeError(f"truncated element header at offset {pos}")
                    length = _L(buf, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
                if vr == "UN" and (group & 1 or length < 0xFFFF and _is_known(tag)):
                    raise _Fallback  # pydicom may replace UN by a known VR
            conv = _CONVERTERS.get(vr)
            if conv is None:  # "" (private: ask the creator) or an ambiguous VR
                vr = self._odd_vr(tag, vr, creators)
                conv = _CONVERTERS.get(vr)
                if conv is None:
                    raise _Fallback
            if length == _UNDEFINED:
                if vr != "SQ" and not (implicit and self._undefined_is_sq(tag, pos, end)):
                    raise _Fallback  # encapsulated pixel data, UN, ...
                items, pos = self.sequence(pos, end, True, depth + 1)
                el = {"vr": "SQ", "Value": items}
            else:
                vend = pos + length
                if vend > end:
                    raise DecodeError(f"element length past end at offset {start}")
                if vr == "SQ":
                    items, pos = self.sequence(pos, vend, False, depth + 1)
                    el = {"vr": "SQ", "Value": items}
                else:
                    el = conv(vr, buf[pos:vend], enc, tag) if length else {"vr": vr}
                    pos = vend
            if group & 1 and 0x10 <= elem < 0x100:
                if tag in creators:
                    raise _Fallback  # a duplicate, or needed before it came
                value = el.get("Value")
                ok = value and len(value) == 1 and isinstance(value[0], str)
                creators[tag] = value[0] if ok else ""  # pydicom: anything else is unknown
            elif tag == 0x00080005:
                enc = self._charset(el, depth, out)
            key = _KEYS.get(tag)
            if key is None:
                key = f"{tag:08X}"
                if len(_KEYS) < 20000:
                    _KEYS[tag] = key
            out[key] = el

    def sequence(self, pos: int, end: int, undefined: bool, depth: int) -> tuple[list, int]:
        if depth > _MAX_DEPTH:
            raise DecodeError("sequences nested too deeply")
        buf, items = self.buf, []
        while undefined or pos < end:
            if pos + 8 > end:
                raise DecodeError(f"truncated sequence at offset {pos}")
            group, elem, length = _HHL(buf, pos)
            tag = group << 16 | elem
            if tag == _ITEM:
                pos += 8
                if length == _UNDEFINED:
                    item, pos = self.dataset(pos, end, depth, True)
                elif pos + length > end:
                    raise DecodeError(f"item length past end at offset {pos - 8}")
                else:
                    item, pos = self.dataset(pos, pos + length, depth, False)
                items.append(item)
            elif tag == _SEQ_END and undefined:
                if length:
                    raise _Fallback
                return items, pos + 8
            else:
                raise DecodeError(f"expected item tag at offset {pos}")
        return items, pos

    def _charset(self, el: dict, depth: int, out: dict) -> str:
        """Apply (0008,0005); only top-level, single-valued, simple ones here."""
        if depth or self.charset_seen or el["vr"] != "CS":
            raise _Fallback
        self.charset_seen = True
        value = el.get("Value", [""])
        enc = _CHARSETS.get(value[0]) if len(value) == 1 else None
        if enc is None:
            raise _Fallback
        # pydicom applies it to the whole data set, also to text before it
        if enc != self.enc and any(e["vr"] in _CHARSET_DEPENDENT for e in out.values()):
            raise _Fallback
        self.enc = enc
        return enc

    def _odd_vr(self, tag: int, vr: str, creators: dict) -> str:
        if vr == "":  # private element: the private dictionary knows it by creator
            creator_tag = tag & 0xFFFF0000 | (tag & 0xFF00) >> 8
            name = creators.setdefault(creator_tag, None)
            return _private_vr(tag, name) if name else "UN"
        # Ambiguous dictionary VRs as pydicom corrects them without pixel data
        if tag in _AMBIGUOUS_US_SS_TAGS:
            self.us_ss = True
            return "US"
        if tag in _AMBIGUOUS_OB_OW_TAGS or tag in _OVERLAY_DATA_TAGS:
            return "OW"
        raise _Fallback

    def _undefined_is_sq(self, tag: int, pos: int, end: int) -> bool:
        """Implicit VR, undefined length: the dictionary says SQ, or an item follows."""
        if not tag >> 16 & 1:
            try:
                return dictionary_VR(tag) == "SQ"
            except KeyError:
                pass
        if pos + 4 > end:
            raise DecodeError(f"truncated element at offset {pos}")
        return _L(self.buf, pos)[0] == 0xE000FFFE


@lru_cache(maxsize=4096)
def _nondict_vr(tag: int) -> str:
    """pydicom's implicit VR for a tag not in the main dictionary ("" = ask creator)."""
    if tag >> 16 & 1:
        if 0x10 <= tag & 0xFFFF < 0x100:
            return "LO"  # private creator
        return "" if tag & 0xFF00 else "UN"
    try:
        return dictionary_VR(tag)  # repeating groups such as (60xx,3000)
    except KeyError:
        return "UL" if tag & 0xFFFF == 0 else "UN"  # group length


def _is_known(tag: int) -> bool:
    """Would pydicom's dictionary give this (public) tag a VR other than UN?"""
    entry = _DICT_GET(tag)
    return entry[0] != "UN" if entry else _nondict_vr(tag) not in ("UL", "UN")


@lru_cache(maxsize=4096)
def _private_vr(tag: int, creator: str) -> str:
    try:
        return private_dictionary_VR(tag, creator)
    except KeyError:
        return "UN"


# Value converters (vr, non-empty value bytes, text encoding, tag) -> JSON element,
# each mirroring pydicom's converter for the VR and DataElement.to_json_dict.
def _decode(b: bytes, enc: str) -> str:
    if b"\x1b" in b:
        raise _Fallback  # ISO 2022 escape sequences: pydicom's decoder
    try:
        return b.decode(enc)
    except UnicodeDecodeError:
        raise _Fallback from None  # pydicom decodes with replacement characters


def _strings(vr, b, enc, tag):
    """Character strings, split on backslash and unpadded the way pydicom does."""
    s = _decode(b, enc) if vr in _CHARSET_DEPENDENT else b.decode("latin_1")
    if vr == "UI":  # trailing NUL padding; pydicom's UID() strips spaces too
        values = [v.strip() for v in s.rstrip("\0 ").split("\\")]
    elif vr == "AE":  # leading and trailing spaces are insignificant
        values = [v.strip() for v in s.split("\\")]
    elif vr in ("SH", "LO", "UC"):
        values = [v.rstrip("\0 ") for v in s.split("\\")]
    elif vr in ("ST", "LT", "UT"):  # a backslash is not a delimiter
        values = [s.rstrip("\0 ")]
    elif vr == "UR":
        values = [s.rstrip()]
    else:  # AS CS DA DT TM
        values = s.rstrip(" \0").split("\\")
    # pydicom: one empty string has VM 0, several empty strings are kept
    return {"vr": vr, "Value": values} if len(values) > 1 or values[0] else {"vr": vr}


def _pn(vr, b, enc, tag):
    names, values = _decode(b.rstrip(b"\0 "), enc).split("\\"), []
    for name in names:
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        if not groups:
            if len(names) == 1:
                return {"vr": vr}
            raise _Fallback  # pydicom fails on an empty name among several
        values.append(dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups)))
    return {"vr": vr, "Value": values}


def _int_string(s: str) -> int:
    f = float(s)  # pydicom's IS takes "1.0" and truncates "1.5" (as an ISfloat)
    try:
        n = int(s)
    except ValueError:
        return int(f)
    return n if n == f else int(f)


def _numeric_string(vr, b, enc, tag):  # IS DS; anything odd is pydicom's to judge
    s = b.decode("latin_1")
    values = (s.strip() if vr == "DS" else s).rstrip(" \0").split("\\")
    if values == [""]:
        return {"vr": vr}
    try:
        return {"vr": vr, "Value": [float(v) if vr == "DS" else _int_string(v) for v in values]}
    except (ValueError, OverflowError):
        raise _Fallback from None


def _numbers(vr, b, enc, tag):
    fmt, size = _NUMBER_FORMATS[vr]
    n, rest = divmod(len(b), size)
    if rest:
        raise _Fallback  # pydicom raises BytesLengthException
    values = list(struct.unpack(f"<{n}{fmt}", b))
    if n > 1 and tag in _LUT_DESCRIPTOR_TAGS and values[0] < 0:
        values[0] += 65536  # pydicom's LUT Descriptor fix-up
    return {"vr": vr, "Value": values}


def _at(vr, b, enc, tag):
    if len(b) % 4:
        raise _Fallback
    v = struct.unpack(f"<{len(b) // 2}H", b)
    return {"vr": vr, "Value": [f"{v[i]:04X}{v[i + 1]:04X}" for i in range(0, len(v), 2)]}


def _binary(vr, b, enc, tag):
    return {"vr": vr, "InlineBinary": base64.b64encode(b).decode("ascii")}


_NUMBER_FORMATS = {"US": ("H", 2), "SS": ("h", 2), "UL": ("L", 4), "SL": ("l", 4),
                   "FL": ("f", 4), "FD": ("d", 8), "SV": ("q", 8), "UV": ("Q", 8)}
_CONVERTERS = {
    **dict.fromkeys(("AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM"), _strings),
    **dict.fromkeys(("UC", "UI", "UR", "UT"), _strings),
    **dict.fromkeys(("IS", "DS"), _numeric_string),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), _binary),
    **dict.fromkeys(_NUMBER_FORMATS, _numbers),
    "PN": _pn, "AT": _at, "SQ": _binary,  # SQ: never called
}
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_EXPLICIT_VRS = {vr.encode(): vr for vr in _CONVERTERS}
