"""The direct DICOM JSON encoder must give exactly pydicom's bytes, or refuse and leave it to pydicom."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import encode

from workflow.dimse.json_encoder import LARGE_SEQUENCE, NotEncodable, response_dataset, sequence_bytes

uid = st.from_regex(r"[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){1,6}", fullmatch=True)
text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
               max_size=16)


@st.composite
def input_item(draw) -> dict:
    refs = [{"00081150": {"vr": "UI", "Value": [draw(uid)]}, "00081155": {"vr": "UI", "Value": [draw(uid)]}}
            for _ in range(draw(st.integers(0, 3)))]
    item = {"0040E020": {"vr": "CS", "Value": ["DICOM"]}, "0020000D": {"vr": "UI", "Value": [draw(uid)]},
            "00081199": {"vr": "SQ", "Value": refs},
            "0040E021": {"vr": "SQ", "Value": [{"00080054": {"vr": "AE", "Value": [draw(text) or "A"]}}]}}
    if draw(st.booleans()):
        item["0040E022"] = {"vr": "SQ", "Value": [{"00880130": {"vr": "SH"}, "00880140": {"vr": "UI",
                                                                                       "Value": [draw(uid)]}}]}
    if draw(st.booleans()):
        item["00201208"] = {"vr": "IS", "Value": [draw(st.integers(0, 99999))]}
        item["00280010"] = {"vr": "US", "Value": [draw(st.integers(0, 65535))]}
    return item


@settings(max_examples=30, deadline=None)
@given(drawn=st.lists(input_item(), min_size=1, max_size=8), implicit=st.booleans(), name=text)
def test_same_bytes_as_pydicom(drawn, implicit, name):
    items = (drawn * LARGE_SEQUENCE)[:LARGE_SEQUENCE + len(drawn)]  # large enough for the fast path
    ds = {"00404021": {"vr": "SQ", "Value": items}, "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
          "00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}
    fast = response_dataset(ds, implicit)
    assert fast.get_item(0x00404021).is_raw  # the fast path was taken
    assert encode(fast, implicit, True) == encode(Dataset.from_json(ds), implicit, True)


def test_what_it_cannot_encode_exactly_goes_to_pydicom():
    with pytest.raises(NotEncodable):
        sequence_bytes([{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller"}]}}], True)
    items = [{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller"}]}}] * LARGE_SEQUENCE
    ds = {"00404021": {"vr": "SQ", "Value": items}, "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
    slow = response_dataset(ds, False)
    assert not slow.get_item(0x00404021).is_raw
    assert encode(slow, False, True) == encode(Dataset.from_json(ds), False, True)


@st.composite
def response(draw) -> dict:
    """A workitem-like response: the VRs a C-FIND or N-GET answer carries, some values empty."""
    def maybe(element):
        return element if draw(st.booleans()) else {"vr": element["vr"]}
    ds = {"00080018": {"vr": "UI", "Value": [draw(uid)]},
          "00100010": maybe({"vr": "PN", "Value": [{"Alphabetic": draw(text) or "Doe^Jane"}]}),
          "00100020": maybe({"vr": "LO", "Value": [draw(text) or "PID"]}),
          "00100030": maybe({"vr": "DA", "Value": ["19700101"]}),
          "00404005": maybe({"vr": "DT", "Value": ["20261205090000"]}),
          "00741000": {"vr": "CS", "Value": [draw(st.sampled_from(["SCHEDULED", "IN PROGRESS"]))]},
          "00741200": maybe({"vr": "CS", "Value": ["MEDIUM"]}),
          "00404025": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": [draw(text) or "ST1"]},
                                              "00080102": {"vr": "SH", "Value": ["99WFM"]}}]},
          "00404021": {"vr": "SQ", "Value": [draw(input_item()) for _ in range(draw(st.integers(0, 3)))]},
          "00201208": maybe({"vr": "IS", "Value": [draw(st.integers(0, 9999))]})}
    return ds


@settings(max_examples=60, deadline=None)
@given(ds=response(), implicit=st.booleans())
def test_a_whole_response_encodes_as_pydicom_does(ds, implicit):
    from workflow.dimse.json_encoder import encoded_or_none, install
    from pynetdicom import service_class

    install()
    answer = encoded_or_none(ds, implicit)
    assert answer is not None
    assert service_class.encode(answer, implicit, True, False) == encode(Dataset.from_json(ds), implicit, True, False)


@pytest.mark.parametrize("name", ["=", "A==", "=A", "A^", "^"])
def test_a_person_name_ending_in_group_delimiters_encodes_as_pydicom_does(name):
    """Trailing "=" delimit empty component groups: pydicom leaves them out, and so must we."""
    from workflow.dimse.json_encoder import encoded_or_none
    ds = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]}}
    for implicit in (True, False):
        assert encoded_or_none(ds, implicit).encoded == encode(Dataset.from_json(ds), implicit, True, False)


def test_a_decimal_number_is_left_to_pydicom():
    from workflow.dimse.json_encoder import encoded_or_none
    assert encoded_or_none({"00181050": {"vr": "DS", "Value": [0.3]}}, True) is None


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_a_handler_answer_is_sent_as_encoded_bytes(syntax):
    """What the handlers return (`to_dataset`) for an encodable match is the pre-encoded data set, not
    pydicom's; and it is truthy, as pynetdicom sends a data set only `if ds`."""
    from types import SimpleNamespace
    from workflow.dimse.datasets import to_dataset
    from workflow.dimse.json_encoder import Encoded

    ds = {"00100020": {"vr": "LO", "Value": ["PID"]}, "00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}
    answer = to_dataset(ds, SimpleNamespace(transfer_syntax=syntax))
    assert isinstance(answer, Encoded) and answer
    assert answer.encoded == encode(Dataset.from_json(ds), syntax.is_implicit_VR, True, False)
