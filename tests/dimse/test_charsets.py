"""The Specific Character Set a data set sent over DIMSE declares (dimse/charsets.py): DICOM JSON text is
Unicode, and pydicom writes what the declared set cannot encode as "?"."""

from __future__ import annotations

import pytest

from workflow.dimse.charsets import with_character_set


def _cs(*values):
    return {"vr": "CS", "Value": list(values)}


LABEL = "00741204"


def _label(text: str, charset=None) -> dict:
    ds = {LABEL: {"vr": "LO", "Value": [text]}}
    if charset is not None:
        ds["00080005"] = charset
    return ds


def test_ascii_text_declares_nothing_more():
    ds = _label("CT head")
    assert with_character_set(ds) is ds


@pytest.mark.parametrize("charset", [None, _cs(), _cs(None), _cs("ISO_IR 6")])
def test_text_beyond_ascii_with_no_set_declared_declares_utf8(charset):
    out = with_character_set(_label("Jürgen", charset))
    assert out["00080005"] == _cs("ISO_IR 192") and out[LABEL]["Value"] == ["Jürgen"]


def test_a_declared_set_that_encodes_the_text_is_kept():
    ds = _label("Jürgen", _cs("ISO_IR 100"))
    assert with_character_set(ds) is ds


def test_a_declared_set_that_cannot_encode_the_text_becomes_utf8():
    ds = _label("Jürgen 患者", _cs("ISO_IR 100"))
    out = with_character_set(ds)
    assert out["00080005"] == _cs("ISO_IR 192") and ds["00080005"] == _cs("ISO_IR 100")  # a copy


def test_code_extensions_are_left_to_pydicom():
    ds = _label("山田", _cs(None, "ISO 2022 IR 87"))
    assert with_character_set(ds) is ds


def test_text_inside_sequences_and_person_names_counts():
    in_sequence = {"00741002": {"vr": "SQ", "Value": [{"00741008": {"vr": "ST", "Value": ["à moitié"]}}]}}
    in_name = {"00404009": {"vr": "SQ", "Value": [{"00404037": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Anna"}]}}]}}
    ideographic = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Taro", "Ideographic": "山田^太郎"}]}}
    for ds in (in_sequence, in_name, ideographic):
        assert with_character_set(ds)["00080005"] == _cs("ISO_IR 192")


def test_uids_and_numbers_are_not_text():
    ds = {"00080018": {"vr": "UI", "Value": ["1.2.3"]}, "00741006": {"vr": "DS", "Value": [37.5]}}
    assert with_character_set(ds) is ds
