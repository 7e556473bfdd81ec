"""The Specific Character Set (0008,0005) a data set sent over DIMSE declares.

DICOM JSON text is Unicode: a workitem created over UPS-RS carries no character set, and one created
over DIMSE keeps the set it came in, which a later change may have given text it cannot encode. pydicom
writes text in the declared set, replacing what it cannot encode with "?" (and a data set that declares
none in ISO 8859-1, which the receiver reads as the default repertoire). So a data set with text outside
ASCII declares ISO_IR 192 (UTF-8) unless the set it declares encodes all of it."""

from __future__ import annotations

from typing import Iterator

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from workflow.kernel.dicom_json_check import TEXT_VRS
from workflow.kernel.json_model import JsonDataset

SPECIFIC_CHARACTER_SET = "00080005"
UTF_8 = "ISO_IR 192"


def with_character_set(ds: JsonDataset) -> JsonDataset:
    """`ds`, or a copy declaring UTF-8 when its text needs a character set that `ds` does not declare."""
    outside = [text for text in _texts(ds) if not text.isascii()]
    if not outside:
        return ds
    declared = (ds.get(SPECIFIC_CHARACTER_SET) or {}).get("Value") or []
    if len(declared) > 1:  # ISO 2022 code extensions: pydicom switches between them with escapes
        return ds
    # ISO_IR 6 is the default repertoire, ASCII (pydicom maps it to ISO 8859-1, as it reads leniently)
    encoding = None if not declared or declared[0] in (None, "", "ISO_IR 6") else python_encoding.get(declared[0])
    if encoding is not None and all(_encodes(text, encoding) for text in outside):
        return ds
    return {**ds, SPECIFIC_CHARACTER_SET: {"vr": "CS", "Value": [UTF_8]}}


def _texts(ds: JsonDataset) -> Iterator[str]:
    for element in ds.values():
        vr, values = element.get("vr"), element.get("Value") or ()
        if vr == "SQ":
            for item in values:
                yield from _texts(item)
        elif vr == "PN":
            for name in values:
                if isinstance(name, dict):
                    yield from (group for group in name.values() if isinstance(group, str))
        elif vr in TEXT_VRS:  # DS and IS values are numbers in DICOM JSON
            yield from (value for value in values if isinstance(value, str))


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def declare_character_set(ds: Dataset) -> Dataset:
    """`ds` (a pydicom data set a tool is about to send), declaring ISO_IR 192 when its text needs it."""
    if with_character_set(ds.to_json_dict()).get(SPECIFIC_CHARACTER_SET, {}).get("Value") == [UTF_8]:
        ds.SpecificCharacterSet = UTF_8
    return ds
