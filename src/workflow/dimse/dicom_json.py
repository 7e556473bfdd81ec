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
that go to pydicom keep its leniency there.)

Refused on both paths, where pydicom is silent: an element that appears twice in a
data set or item (pydicom keeps the last copy) or out of ascending tag order (PS3.5
7.1), and a public element whose explicit VR its dictionary entry does not allow
("US or SS" allows either; UN is allowed for any tag), each naming the tag.  On the
pydicom path a structure scan (`_Scan`) finds these before pydicom reads, and a
value pydicom cannot read (IS "abc") is named before ``to_json_dict``, which would
log an ERROR for it.
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
            return _fast_json(raw, ts == IMPLICIT_VR_LE, strict=True)
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
    if not flags[2] and flags[1]:  # what pydicom would take silently: refused as on the fast path
        _Scan(raw, flags[0]).dataset(0, len(raw), 0, False)
    try:
        ds = decode(BytesIO(raw), *flags)
        _read_values(ds)  # first, naming the element: to_json_dict would log an ERROR and re-raise
        return ds.to_json_dict()
    except DecodeError:
        raise
    except Exception as exc:
        # An Error Comment is LO: default repertoire, no backslash
        reason = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in f"{exc}")
        raise DecodeError(f"{type(exc).__name__}: {reason}"[:60]) from exc


def _fast_json(raw: bytes, implicit: bool, strict: bool = False) -> dict:
    """The hand-written decoder; raises _Fallback where pydicom must decide. `strict` (as
    dataset_bytes_to_json decodes) refuses what PS3.5 forbids and pydicom takes: an element twice or out
    of ascending tag order, an explicit VR the dictionary does not allow; without it, pydicom's answer."""
    # pydicom switches to explicit VR if an implicit data set looks explicit
    if implicit and len(raw) >= 6 and 0x40 < raw[4] < 0x5B and 0x40 < raw[5] < 0x5B:
        raise _Fallback
    dec = _Decoder(raw, implicit, strict)
    out = dec.dataset(0, len(raw), 0, False)[0]
    # An ambiguous US/SS became US as there is no (0028,0103) Pixel Representation
    if dec.us_ss and b"\x28\x00\x03\x01" in raw:
        raise _Fallback
    return out


class _Decoder:
    def __init__(self, buf: bytes, implicit: bool, strict: bool = False) -> None:
        self.buf, self.implicit, self.strict = buf, implicit, strict
        self.enc = "latin_1"  # pydicom's default "iso8859" is Latin-1
        self.charset_seen = self.us_ss = False

    def dataset(self, pos: int, end: int, depth: int, undefined: bool) -> tuple[dict, int]:
        """Decode buf[pos:end]; an undefined-length item ends at (FFFE,E00D)."""
        buf, implicit, enc = self.buf, self.implicit, self.enc
        out: dict = {}
        creators: dict = {}  # private creator tag -> name (None: was missing when needed)
        last = -1  # PS3.5 7.1: each element once, in ascending tag order
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
            if tag <= last and self.strict:
                raise DecodeError(_order_fault(tag, last, out))
            last = tag
            if implicit:
                pos += 8
                entry = _DICT_GET(tag)
                vr = entry[0] if entry is not None else _nondict_vr(tag)
            else:
                seen = _VR_SEEN_GET(tag)  # (VR bytes, VR) the tag came with before, one the dictionary allows
                if seen is not None and seen[0] == vrb:
                    vr = seen[1]
                else:
                    vr = _explicit_vr(tag, vrb, self.strict)
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


# --- What PS3.5 forbids and pydicom takes silently: refused on both paths -----------------------------------

def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _order_fault(tag: int, last: int, out: dict | None) -> str:
    """PS3.5 7.1: a data element at most once in a data set, in ascending tag order."""
    if tag == last or (out is not None and f"{tag:08X}" in out):
        return f"{_tag_text(tag)} appears twice"
    return f"{_tag_text(tag)} out of ascending tag order"


@lru_cache(maxsize=64)
def _dictionary_vrs(entry: str) -> frozenset:
    """The VRs a dictionary entry allows: "US or SS or OW" -> {US, SS, OW}."""
    return frozenset(entry.split(" or "))


def _dictionary_vr(tag: int) -> str:
    entry = _DICT_GET(tag)
    return entry[0] if entry is not None else _nondict_vr(tag)


def _vr_allowed(tag: int, vr: str) -> bool:
    """PS3.5: a public element's explicit VR is one its dictionary entry names, or UN; private elements
    and tags the dictionary does not know take any."""
    if tag >> 16 & 1 or vr == "UN":
        return True
    known = _dictionary_vr(tag)
    return known in ("UN", "NONE", "") or vr in _dictionary_vrs(known)


def _check_vr(tag: int, vr: str) -> None:
    """An explicit VR the public dictionary does not allow for `tag` (UN excepted) is refused."""
    if not _vr_allowed(tag, vr):
        raise DecodeError(f"{_tag_text(tag)} has VR {vr}, dictionary {_dictionary_vr(tag)}")


_VR_SEEN: dict[int, tuple[bytes, str]] = {}  # tag -> (VR bytes, VR) it last came with, an allowed one
_VR_SEEN_GET = _VR_SEEN.get


def _explicit_vr(tag: int, vrb: bytes, strict: bool) -> str:
    """The VR of an explicit VR element not met before with this tag: _Fallback for one the fast path
    does not know; when `strict`, DecodeError for one the dictionary does not allow. An allowed one is
    remembered for the tag."""
    vr = _EXPLICIT_VRS.get(vrb)
    if vr is None:
        raise _Fallback  # unknown VR, or implicit VR inside explicit data
    if _vr_allowed(tag, vr):
        if len(_VR_SEEN) < 20000:
            _VR_SEEN[tag] = (vrb, vr)
    elif strict:
        _check_vr(tag, vr)
    return vr


def _read_values(ds) -> None:
    """Each value of a pydicom Dataset (items too) read and put in JSON as to_json_dict will; DecodeError
    names the first that cannot be."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        try:
            el = ds[tag]
            if el.VR != "SQ":
                el.to_json_dict(None, 1024)
        except Exception:  # noqa: BLE001 - any failure to read the value refuses the data set
            value = raw.value.decode("latin_1") if isinstance(raw.value, bytes) else str(raw.value)
            shown = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in value.rstrip(" \0")[:16])
            vr = raw.VR or _nondict_vr(int(tag))
            raise DecodeError(f"{_tag_text(int(tag))} invalid {vr} value '{shown}'") from None
        if el.VR == "SQ":
            for item in el.value:
                _read_values(item)


class _Scan:
    """The element structure of a data set pydicom is to decode, walked for what the fast path refuses
    there (duplicates, tags out of order, public elements with a VR the dictionary does not allow), values
    unread. Where it cannot follow pydicom (an undefined-length value that is not a sequence, an unknown
    VR, malformed lengths) it stops and leaves the data set to pydicom."""

    class Stop(Exception):
        pass

    def __init__(self, buf: bytes, implicit: bool, strict: bool = False) -> None:
        self.buf, self.implicit, self.strict = buf, implicit, strict

    def dataset(self, pos: int, end: int, depth: int, undefined: bool) -> None:
        try:
            self._dataset(pos, end, depth, undefined, self.implicit)
        except _Scan.Stop:
            pass

    def _dataset(self, pos: int, end: int, depth: int, undefined: bool, implicit: bool) -> int:
        buf, last = self.buf, -1
        while pos < end:
            if pos + 8 > end or depth > _MAX_DEPTH:
                raise _Scan.Stop
            group, elem, length = _HHL(buf, pos)
            tag = group << 16 | elem
            if tag == _ITEM_END:
                if undefined:
                    return pos + 8
                raise _Scan.Stop
            if group == 0xFFFE:
                raise _Scan.Stop
            if tag <= last:
                raise DecodeError(_order_fault(tag, last, None))
            last = tag
            if implicit:
                vr, pos = None, pos + 8
            else:
                vrb = buf[pos + 4:pos + 6]
                vr = _EXPLICIT_VRS.get(vrb)
                if vr is None:
                    raise _Scan.Stop  # pydicom guesses: implicit VR, or a 2-byte length
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise _Scan.Stop
                    length, pos = _L(buf, pos + 8)[0], pos + 12
                else:
                    length, pos = length >> 16, pos + 8  # read with the VR as one word: its high half
                _check_vr(tag, vr)
            known = None if group & 1 else (_DICT_GET(tag) or (None,))[0]
            if vr == "SQ" or (vr is None and known == "SQ"):
                pos = self._sequence(pos, end, length, depth + 1, implicit)
            elif vr == "UN" and known == "SQ" and length != _UNDEFINED:
                self._sequence(pos, pos + length, length, depth + 1, True)  # pydicom reads it as implicit VR
                pos += length
            elif length == _UNDEFINED:
                raise _Scan.Stop
            else:
                pos += length
        if undefined or pos > end:
            raise _Scan.Stop
        return pos

    def _sequence(self, pos: int, end: int, length: int, depth: int, implicit: bool) -> int:
        undefined = length == _UNDEFINED
        stop = end if undefined else pos + length
        if stop > end:
            raise _Scan.Stop
        buf = self.buf
        while undefined or pos < stop:
            if pos + 8 > stop:
                raise _Scan.Stop
            group, elem, item_length = _HHL(buf, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == _SEQ_END and undefined:
                return pos
            if tag != _ITEM:
                raise _Scan.Stop
            if item_length == _UNDEFINED:
                pos = self._dataset(pos, stop, depth, True, implicit)
            else:
                if pos + item_length > stop:
                    raise _Scan.Stop
                self._dataset(pos, pos + item_length, depth, False, implicit)
                pos += item_length
        return pos


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
