"""Building DIMSE status and identifier datasets the same way in every handler."""

from __future__ import annotations

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag


def status(code: int, comment: str | None = None, attributes: list[int] | None = None) -> Dataset:
    """A status Dataset; ErrorComment explains failures and warnings (LO: at most 64 chars)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    if attributes:
        ds.AttributeIdentifierList = [Tag(t) for t in attributes]
    return ds


def answer(request: Dataset, known: dict[str, object], always: tuple[str, ...] = ()) -> Dataset:
    """A C-FIND response: every key the request asked for (value if known, else empty), plus the
    keys in `always`. Values are given by keyword; None means empty."""
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"
    for elem in request:
        keyword = elem.keyword
        if not keyword or keyword == "SpecificCharacterSet" or elem.tag.group in (0x0000, 0x0002):
            continue  # private or command elements are not echoed
        if keyword in known:
            _set(out, keyword, known[keyword])
        else:
            out.add(DataElement(elem.tag, elem.VR, [] if elem.VR == "SQ" else None))
    for keyword in always:
        if keyword not in out:
            _set(out, keyword, known.get(keyword))
    return out


def _set(ds: Dataset, keyword: str, value) -> None:
    if value is None or value == "":
        tag = tag_for_keyword(keyword)
        ds.add(DataElement(tag, dictionary_VR(tag), [] if dictionary_VR(tag) == "SQ" else None))
    else:
        setattr(ds, keyword, value)
