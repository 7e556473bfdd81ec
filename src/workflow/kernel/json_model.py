"""Small helpers for the DICOM JSON model (PS3.18 F.2): dict "GGGGEEEE" -> {"vr": ..., "Value": [...]}."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

JsonDataset = dict[str, Any]


def tag_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return f"{tag:08X}"


def first(ds: JsonDataset, tag: str) -> Any:
    """The first non-empty value of an element, or None."""
    element = ds.get(tag)
    for value in (element or {}).get("Value") or ():
        if value not in (None, ""):
            return value
    return None


def items(ds: JsonDataset, tag: str) -> list[JsonDataset]:
    element = ds.get(tag)
    return [i for i in (element or {}).get("Value") or () if isinstance(i, dict)]


def element(keyword: str, *values: Any) -> tuple[str, dict[str, Any]]:
    """(tag, element) for a keyword; no values gives an empty element."""
    tag = tag_of(keyword)
    vr = dictionary_VR(int(tag, 16)).split(" or ")[0]
    out: dict[str, Any] = {"vr": vr}
    if values:
        out["Value"] = list(values)
    return tag, out


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
