"""The DICOM JSON model (PS3.18 F.2): dict "GGGGEEEE" -> {"vr": ..., "Value": [...]}, and the one set of
accessors every room reads it with. A value that is absent, None, "" or only spaces (DICOM padding) is
no value; a sequence item is a value even when empty."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

JsonDataset = dict[str, Any]


def tag_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return f"{tag:08X}"


def _is_value(value: Any, vr: str | None) -> bool:
    if vr == "SQ":
        return isinstance(value, dict)
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):  # a PN value: {"Alphabetic": ...}
        return any(isinstance(v, str) and v.strip() for v in value.values())
    return value is not None


def values(ds: JsonDataset, tag: str) -> list[Any]:
    """The values (or sequence items) of an element; [] when it is absent or empty."""
    found = ds.get(tag)
    if not found:
        return []
    vr = found.get("vr")
    return [v for v in found.get("Value") or () if _is_value(v, vr)]


def first(ds: JsonDataset, tag: str) -> Any:
    """The first value (or item) of an element, None when it has none (`values(ds, tag)[0]`, without
    building the list: an IAN asks this ten times per instance)."""
    found = ds.get(tag)
    if not found:
        return None
    vr = found.get("vr")
    for value in found.get("Value") or ():
        if value.__class__ is str and vr != "SQ":  # the common case, without the call
            if value.strip():
                return value
        elif _is_value(value, vr):
            return value
    return None


def items(ds: JsonDataset, tag: str) -> list[JsonDataset]:
    """A sequence's items ([] when absent, empty or not a sequence)."""
    return [i for i in values(ds, tag) if isinstance(i, dict)]


def element(keyword: str, *values: Any) -> tuple[str, dict[str, Any]]:
    """(tag, element) for a keyword; no values gives an empty element."""
    tag = tag_of(keyword)
    vr = dictionary_VR(int(tag, 16)).split(" or ")[0]
    out: dict[str, Any] = {"vr": vr}
    if values:
        out["Value"] = list(values)
    return tag, out


def json_element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def build(**keywords: Any) -> JsonDataset:
    """A DICOM JSON data set from keyword=value pairs (a list for several values, a list of
    dicts for a sequence, None for an empty element)."""
    ds: JsonDataset = {}
    for keyword, value in keywords.items():
        if value is None:
            tag, el = element(keyword)
        elif isinstance(value, list):
            tag, el = element(keyword, *value)
        else:
            tag, el = element(keyword, value)
        ds[tag] = el
    return ds
