"""The attribute engine's quick pass over sequence items (kernel/attributes.py `_sound_item_check`).

It may only spare the walk an item the walk would pass in silence: no problem and no note. Checked
against the walk itself on generated items for every nested row list of the IAN, MPPS and UPS tables,
at N-CREATE and N-SET, with Type 2 absences accepted and refused: each row absent, or present with
values valid, blank, malformed, too many, not strings or not a list, under the right VR or another."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from workflow.ian.rules.notification import IAN_ATTRIBUTES, parse_ian
from workflow.kernel.attributes import Attr, Op, Rejected, _sound_item_check, _Walk
from workflow.kernel.json_model import element
from workflow.mpps.rules.procedure_step import MPPS_ATTRIBUTES
from workflow.ups.rules.attributes import UPS_ATTRIBUTES


def _nested(rules: tuple[Attr, ...]):
    for rule in rules:
        if rule.items:
            yield rule.items
            yield from _nested(rule.items)


ROW_LISTS = [rows for table in (IAN_ATTRIBUTES, MPPS_ATTRIBUTES, UPS_ATTRIBUTES) for rows in _nested(table)]
VALUES = ["1.2.840.10008.5.1.4.1.1.2", "2.25.1", "ONLINE", "NEARLINE", "PACS", "AI NODE", "http://a/b", "/wado",
          "20250102", "20250102030405", "120000", "ABC", "", "  ", "1.2..3", "01.2", "A\\B", "x" * 70, "DICOM"]


def _element(draw) -> object:
    shape = draw(st.sampled_from(["values", "values", "values", "empty", "no value key", "string", "not dict"]))
    if shape == "not dict":
        return draw(st.sampled_from(["1.2.3", None, 7]))
    element: dict = {"vr": draw(st.sampled_from(["UI", "CS", "AE", "UR", "SH", "LO", "DT", "SQ", "PN"]))}
    if shape == "values":
        element["Value"] = draw(st.lists(st.one_of(st.sampled_from(VALUES), st.integers(0, 9), st.none(),
                                                   st.just({"Alphabetic": "A^B"}), st.just({})),
                                         min_size=1, max_size=3))
    elif shape == "empty":
        element["Value"] = []
    elif shape == "string":
        element["Value"] = draw(st.sampled_from(VALUES))
    return element


def _valid_element(draw, rule: Attr) -> dict:
    """What a careful SCU sends for the row: most items are such, so the quick pass is taken often."""
    if rule.is_sequence:
        return {"vr": "SQ", "Value": []}
    fitting = [v for v in VALUES if v.strip() and (rule.check is None or rule.check.ok(v))] or ["1.2.3"]
    count = draw(st.integers(1, 2)) if rule.multi else 1
    return {"vr": element(rule.keyword)[1]["vr"], "Value": [draw(st.sampled_from(fitting)) for _ in range(count)]}


@st.composite
def cases(draw):
    rows = draw(st.sampled_from(ROW_LISTS))
    item: dict = {}
    for rule in rows:
        kind = draw(st.sampled_from(["absent", "valid", "valid", "valid", "valid", "blank", "one more", "as SQ",
                                     "any"]))
        if kind in ("valid", "blank", "one more", "as SQ"):
            item[rule.tag] = _valid_element(draw, rule)
            if rule.is_sequence:
                pass
            elif kind == "blank":  # one careful value blanked: kept by `values`, not by the engine
                item[rule.tag]["Value"][-1] = draw(st.sampled_from(["", " "]))
            elif kind == "one more":
                item[rule.tag]["Value"].append(draw(st.sampled_from(VALUES)))
            elif kind == "as SQ":  # careful values under the wrong VR: `values` sees no items in them
                item[rule.tag]["vr"] = "SQ"
        elif kind == "any":
            item[rule.tag] = _element(draw)
    if draw(st.booleans()):
        item["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": "Extra^Tag"}]}  # a row the list does not have
    return rows, item, draw(st.sampled_from([Op.CREATE, Op.SET])), draw(st.booleans())


@settings(max_examples=1500, deadline=None)
@given(cases())
def test_an_item_passed_quickly_is_one_the_walk_passes_in_silence(case):
    rows, item, op, refuse_type2 = case
    if not _sound_item_check(rows, op)(item):
        return
    notes: list[str] = []
    problems = list(_Walk(op, refuse_type2, notes).problems(item, rows, ("Sequence", 0)))
    assert problems == [] and notes == [], (item, problems, notes)


def _ian_item(**changes) -> dict:
    item = {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00081155": {"vr": "UI", "Value": ["1.2.3.4.5"]},
            "00080056": {"vr": "CS", "Value": ["ONLINE"]},
            "00080054": {"vr": "AE", "Value": ["PACS", "ARCHIVE"]},
            "00081190": {"vr": "UR", "Value": ["http://pacs/wado"]}}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


SOP_ROWS = IAN_ATTRIBUTES[2].items[1].items


def test_an_ordinary_instance_item_is_passed_quickly_and_faults_are_walked():
    sound = _sound_item_check(SOP_ROWS, Op.CREATE)
    assert sound(_ian_item())
    assert not sound(_ian_item(**{"00080056": {"vr": "CS", "Value": ["SOMEWHERE"]}}))
    assert not sound(_ian_item(**{"00081155": None}))
    assert not sound(_ian_item(**{"00081190": {"vr": "UR", "Value": [""]}}))  # accepted, by the walk


@pytest.mark.parametrize("fault, status, comment", [
    ({"00080056": {"vr": "CS", "Value": ["SOMEWHERE"]}}, 0x0106, "InstanceAvailability (0008,0056) invalid"),
    ({"00081155": None}, 0x0120, "ReferencedSOPInstanceUID (0008,1155) missing"),
    ({"00080054": {"vr": "AE", "Value": []}}, 0x0121, "RetrieveAETitle (0008,0054) is empty"),
])
def test_a_fault_in_the_last_of_many_items_gets_the_walks_answer(fault, status, comment):
    """The quick pass spares the sound items; the faulty one still gets the precise status and text."""
    sops = [_ian_item(**{"00081155": {"vr": "UI", "Value": [f"1.2.3.{i}"]}}) for i in range(1, 200)]
    sops.append(_ian_item(**fault))
    ian = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00081111": {"vr": "SQ", "Value": []},
           "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3.9"]},
                                               "00081199": {"vr": "SQ", "Value": sops}}]}}
    with pytest.raises(Rejected) as raised:
        parse_ian(json.loads(json.dumps(ian)), 10_000)
    assert raised.value.status.code == status
    assert raised.value.comment.startswith(comment) and "ReferencedSOPSequence" in raised.value.path
