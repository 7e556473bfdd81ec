"""What the HTTP face accepts as DICOM JSON (PS3.18 Annex F.2), checked before any service sees it: a
payload stored as given must be one the DICOM face can encode again (C-FIND, N-GET, events), so anything
pydicom or pynetdicom could not turn into a data set is refused here, with the path of the first fault
(`00400275[0].00321060: ...`).

* Tags: 8 hexadecimal digits, not of group 0000 (command), 0002 (file meta), FFFE (items and
  delimiters), nor of the groups PS3.5 7.8.1 keeps out of use (0001, 0003, 0005, 0007, FFFF); one element
  per tag (keys are normalised to upper case).
* "vr": one of PS3.5 Table 6.2-1's, exactly (upper case); for an attribute of the public dictionary, one
  its entry allows ("US or SS": either). Private (odd group) and unknown tags take any VR.
* An element holds "vr" and at most one of "Value" (an array) and "InlineBinary" (base64, binary VRs
  only: OB OD OF OL OV OW UN, which never have a "Value"). "BulkDataURI" is refused: this server does
  not fetch bulk data.
* Values by VR: text VRs take strings (null for an empty value); PN an object of Alphabetic,
  Ideographic, Phonetic strings (a plain string is taken as its Alphabetic group); IS and DS a finite
  number (whole for IS) or a numeric string; FL and FD finite numbers; SS US SL UL SV UV integers in their
  range; AT "GGGGEEEE" strings; SQ objects, checked in turn, at most MAX_DEPTH sequences deep.
* Text no longer than PS3.5 allows (LO 64 characters, PN 64 per component group, ...) and without NUL,
  which only pads a UI (and is stripped there).

Pure: no web framework, no database (the UPS-RS request parser and the notification routes both use it).
`loads` is the JSON parser of request bodies: NaN and Infinity (which Python's json accepts) are not JSON,
and an oversized integer literal or a too deeply nested body is a client's fault, not a server failure."""

from __future__ import annotations

import binascii
import json
import math
import re
from typing import Any

from pydicom.datadict import dictionary_VR

JsonDataset = dict[str, Any]

MAX_DEPTH = 32  # sequences within sequences; UPS and IAN payloads nest 3 deep at most

VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
                 "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
                 "UR", "US", "UT", "UV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Maximum value length of the text VRs (PS3.5 Table 6.2-1), in characters; None: unlimited (2^32-2).
# TM: 14 in current editions, 16 in earlier ones (HHMMSS.FFFFFF with padding); 16 is kept for a fraction.
TEXT_VRS: dict[str, int | None] = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DT": 26, "LO": 64, "LT": 10240,
                                   "SH": 16, "ST": 1024, "TM": 16, "UC": None, "UI": 64, "UR": None,
                                   "UT": None}
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
PN_GROUP_MAX = 64
INTEGER_RANGES = {"SS": (-2 ** 15, 2 ** 15 - 1), "US": (0, 2 ** 16 - 1), "SL": (-2 ** 31, 2 ** 31 - 1),
                  "UL": (0, 2 ** 32 - 1), "SV": (-2 ** 63, 2 ** 63 - 1), "UV": (0, 2 ** 64 - 1)}
IS_RANGE, IS_MAX, DS_MAX = (-2 ** 31, 2 ** 31 - 1), 12, 16
FLOAT32_MAX = 3.4028234663852886e38
ELEMENT_KEYS = frozenset({"vr", "Value", "InlineBinary", "BulkDataURI"})
REFUSED_GROUPS = {"0000": "a command element (group 0000) is not part of a data set",
                  "0002": "a file meta element (group 0002) is not part of a data set",
                  "FFFE": "an item or delimiter tag (group FFFE) is not an attribute",
                  "0001": "group 0001 is not allowed (PS3.5 7.8.1)", "0003": "group 0003 is not allowed (PS3.5 7.8.1)",
                  "0005": "group 0005 is not allowed (PS3.5 7.8.1)", "0007": "group 0007 is not allowed (PS3.5 7.8.1)",
                  "FFFF": "group FFFF is not allowed (PS3.5 7.8.1)"}

_HEX = frozenset("0123456789ABCDEFabcdef")
_IS = re.compile(r"\s*[+-]?\d+\s*")
_DS = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_AT = re.compile(r"[0-9A-Fa-f]{8}")
# Tag -> the VRs it may have (None: any), for tags of the public dictionary only (so a bounded cache).
_ALLOWED: dict[str, frozenset[str] | None] = {}
_UNSEEN = frozenset({"unseen"})


class DicomJsonError(ValueError):
    """The first fault of a payload that is not DICOM JSON this server accepts; the message names its
    path (`00400275[0].00321060: ...`)."""


class NotJson(ValueError):
    """A request body that is not JSON; the message says why."""


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(raw: bytes | str) -> Any:
    """The JSON of a request body, or NotJson: malformed, not UTF-8, NaN/Infinity, an integer literal too
    long to read (Python refuses over 4300 digits) or nesting too deep to read."""
    try:
        return json.loads(raw, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        text = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise NotJson(text[:200]) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def _tag(key: Any, where: str) -> tuple[str, frozenset[str] | None]:
    """A key's tag (upper case) and the VRs it may have: its dictionary entry's, or None (any) for a
    private or unknown tag; DicomJsonError for a key that is not a tag this server accepts."""
    if key.__class__ is not str or len(key) != 8 or not _HEX.issuperset(key):
        raise DicomJsonError(f"{where}{key!r} is not a DICOM JSON tag (8 hexadecimal digits)")
    tag = key.upper()
    refused = REFUSED_GROUPS.get(tag[:4])
    if refused is not None:
        raise DicomJsonError(f"{where}{tag}: {refused}")
    if int(tag[3], 16) % 2:  # a private group
        return tag, None
    try:
        entry = dictionary_VR(int(tag, 16))
    except KeyError:
        return tag, None
    allowed = frozenset(entry.split(" or ")) & VRS or None  # "NONE" (0072,006D): any
    if key == tag:
        _ALLOWED[tag] = allowed  # dictionary tags only, in one spelling: a bounded cache
    return tag, allowed


def check(ds: Any, where: str = "") -> JsonDataset:
    """`ds` as a checked DICOM JSON data set, keys in upper case, PN strings as objects, UI values without
    their NUL padding; DicomJsonError naming the first fault."""
    return _dataset(ds, where, 0)


def _dataset(ds: Any, where: str, depth: int) -> JsonDataset:
    if ds.__class__ is not dict:
        raise DicomJsonError(f"{where.rstrip('.') or 'the payload'}: not a DICOM JSON data set "
                             "(an object of \"GGGGEEEE\" keys)")
    out: JsonDataset = {}
    known, vrs, text_vrs = _ALLOWED.get, VRS, TEXT_VRS  # locals: this loop runs for every element
    for key, element in ds.items():
        allowed = known(key, _UNSEEN)
        if allowed is _UNSEEN:
            tag, allowed = _tag(key, where)
        else:
            tag = key
        if tag in out:  # the same tag in two letter cases
            raise DicomJsonError(f"{where}{tag}: given twice")
        if element.__class__ is not dict:
            raise DicomJsonError(f"{where}{tag}: an element must be an object with a \"vr\"")
        vr = element.get("vr")
        if vr.__class__ is not str:  # also before `in`: a list or an object is not hashable
            raise DicomJsonError(f"{where}{tag}: an element must be an object with a \"vr\"")
        if vr not in vrs:
            raise DicomJsonError(f"{where}{tag}: {_short(vr)} is not a value representation of PS3.5 (two "
                                 "upper case letters, e.g. LO)")
        if allowed is not None and vr not in allowed:
            raise DicomJsonError(f"{where}{tag}: VR {vr} is not the attribute's ({' or '.join(sorted(allowed))})")
        if len(element) > 2 or "Value" not in element and len(element) > 1:
            _members(element, vr, f"{where}{tag}")
        found = element.get("Value")
        if found is None:
            pass
        elif found.__class__ is not list:
            raise DicomJsonError(f"{where}{tag}: \"Value\" must be an array")
        elif vr == "SQ":
            if depth >= MAX_DEPTH:
                at = f"{where}{tag}"  # shortened: the Warning header holds 300 characters
                raise DicomJsonError(f"{at if len(at) < 100 else at[:40] + '...' + at[-40:]}: sequences nested "
                                     f"more than {MAX_DEPTH} deep")
            at = f"{where}{tag}"
            element = dict(element, Value=[_dataset(item, f"{at}[{i}].", depth + 1)
                                           for i, item in enumerate(found)])
        elif vr in text_vrs:  # the common case, inline
            limit = text_vrs[vr]
            for v in found:
                if v.__class__ is not str or "\0" in v or limit is not None and len(v) > limit or vr == "TM":
                    if v is not None:
                        checked = _text(vr, found, f"{where}{tag}", limit)
                        if checked is not found:
                            element = dict(element, Value=checked)
                        break
        else:
            checked = _values(vr, found, f"{where}{tag}")
            if checked is not found:
                element = dict(element, Value=checked)
        out[tag] = element
    return out


def _members(element: dict, vr: str, at: str) -> None:
    """An element with more than "vr" and "Value": InlineBinary alone, on a binary VR; nothing else."""
    if not ELEMENT_KEYS.issuperset(element):
        extra = sorted(set(element) - ELEMENT_KEYS, key=str)[0]
        raise DicomJsonError(f"{at}: {_short(extra)} is not a member of a DICOM JSON element "
                             "(vr, Value, InlineBinary)")
    if "BulkDataURI" in element:
        raise DicomJsonError(f"{at}: BulkDataURI is not accepted (this server does not fetch bulk data; "
                             "send the value inline)")
    _inline(element["InlineBinary"], vr, at, element.get("Value"))


def _inline(data: Any, vr: str, at: str, found: Any) -> None:
    if found is not None:
        raise DicomJsonError(f"{at}: an element has either \"Value\" or \"InlineBinary\", not both")
    if vr not in BINARY_VRS:
        raise DicomJsonError(f"{at}: InlineBinary is for the binary VRs (OB OD OF OL OV OW UN), not {vr}")
    if data.__class__ is not str:
        raise DicomJsonError(f"{at}: InlineBinary must be a base64 string")
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DicomJsonError(f"{at}: InlineBinary is not valid base64") from None


def _values(vr: str, found: list, at: str) -> list:
    """The values of a non-sequence element, checked; a new list when one was normalised."""
    if vr in TEXT_VRS:
        return _text(vr, found, at, TEXT_VRS[vr])
    if vr == "PN":
        return _names(found, at)
    if vr in INTEGER_RANGES:
        low, high = INTEGER_RANGES[vr]
        for v in found:
            if v.__class__ is not int:
                raise DicomJsonError(f"{at}: {vr} values are integers, not {_short(v)}")
            if not low <= v <= high:
                raise DicomJsonError(f"{at}: {v} is out of the range of {vr} ({low} to {high})")
        return found
    if vr in ("FL", "FD"):
        for v in found:
            if v.__class__ not in (int, float):
                raise DicomJsonError(f"{at}: {vr} values are numbers, not {_short(v)}")
            try:
                number = float(v)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number) or vr == "FL" and abs(number) > FLOAT32_MAX:
                raise DicomJsonError(f"{at}: {_short(v)} is not a finite {vr} number")
        return found
    if vr == "IS":
        return _numbers(found, at, integer=True)
    if vr == "DS":
        return _numbers(found, at, integer=False)
    if vr == "AT":
        for v in found:
            if v.__class__ is not str or not _AT.fullmatch(v):
                raise DicomJsonError(f"{at}: AT values are tags of 8 hexadecimal digits, not {_short(v)}")
        return found
    raise DicomJsonError(f"{at}: {vr} elements have no \"Value\" (their value is InlineBinary)")


def _text(vr: str, found: list, at: str, limit: int | None) -> list:
    out = found
    for i, v in enumerate(found):
        if v is None:
            continue
        if v.__class__ is not str:
            raise DicomJsonError(f"{at}: {vr} values are strings, not {_short(v)}")
        if "\0" in v:
            if vr == "UI" and "\0" not in v.rstrip("\0"):  # NUL pads a UI (PS3.5 9.1): stripped
                out = list(out) if out is found else out
                out[i] = v = v.rstrip("\0")
            else:
                raise DicomJsonError(f"{at}: {vr} value with a NUL character")
        if limit is not None and len(v) > limit:
            raise DicomJsonError(f"{at}: {vr} values are at most {limit} characters, not {len(v)}")
        if vr == "TM" and len(v) > 14 and "." not in v:
            raise DicomJsonError(f"{at}: TM values without a fraction are at most 14 characters, not {len(v)}")
    return out


def _names(found: list, at: str) -> list:
    out = found
    for i, v in enumerate(found):
        if v is None:
            continue
        if v.__class__ is str:  # not F.2's form, but common: the groups of the DICOM encoding
            groups = v.split("=")
            if len(groups) > 3:
                raise DicomJsonError(f"{at}: PN values have at most 3 component groups")
            v = {g: text for g, text in zip(PN_GROUPS, groups) if text or g == "Alphabetic"}
            out = list(out) if out is found else out
            out[i] = v
        elif v.__class__ is not dict:
            raise DicomJsonError(f"{at}: PN values are objects of component groups (Alphabetic, "
                                 f"Ideographic, Phonetic), not {_short(v)}")
        for group, text in v.items():
            if group not in PN_GROUPS:
                raise DicomJsonError(f"{at}: {_short(group)} is not a PN component group (Alphabetic, "
                                     "Ideographic, Phonetic)")
            if text.__class__ is not str:
                raise DicomJsonError(f"{at}: the PN {group} group is a string, not {_short(text)}")
            if len(text) > PN_GROUP_MAX:
                raise DicomJsonError(f"{at}: PN component groups are at most {PN_GROUP_MAX} characters, "
                                     f"not {len(text)}")
            if "\0" in text:
                raise DicomJsonError(f"{at}: PN value with a NUL character")
    return out


def _numbers(found: list, at: str, integer: bool) -> list:
    """IS (integer) or DS values: numbers or numeric strings; blank strings become null (empty)."""
    vr = "IS" if integer else "DS"
    out = found
    for i, v in enumerate(found):
        if v is None:
            continue
        kind = v.__class__
        if kind is str:
            if not v.strip():
                out = list(out) if out is found else out
                out[i] = None
                continue
            if len(v) > (IS_MAX if integer else DS_MAX):
                raise DicomJsonError(f"{at}: {vr} values are at most {IS_MAX if integer else DS_MAX} "
                                     f"characters, not {len(v)}")
            if not (_IS if integer else _DS).fullmatch(v):
                raise DicomJsonError(f"{at}: {_short(v)} is not {'an integer' if integer else 'a decimal'} "
                                     f"string ({vr})")
            number: Any = int(v) if integer else float(v)
        elif kind is int or kind is float:
            number = v
        else:
            raise DicomJsonError(f"{at}: {vr} values are numbers or numeric strings, not {_short(v)}")
        if integer:
            if number.__class__ is float and not (math.isfinite(number) and number.is_integer()):
                raise DicomJsonError(f"{at}: {_short(v)} is not a whole number (IS)")
            if not IS_RANGE[0] <= number <= IS_RANGE[1]:
                raise DicomJsonError(f"{at}: {_short(v)} is out of the range of IS "
                                     f"({IS_RANGE[0]} to {IS_RANGE[1]})")
        else:
            try:
                finite = math.isfinite(number)
            except OverflowError:
                finite = False
            if not finite:
                raise DicomJsonError(f"{at}: {_short(v)} is not a finite number (DS)")
    return out
