"""Table CC.2.5-3 as data and the N-CREATE / N-SET / Final State checks on DICOM JSON."""

from __future__ import annotations

import copy
from typing import Iterator

import pytest
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag
from pydicom.uid import UID

from workflow.ups.rules import attributes as ups
from workflow.ups.rules.attributes import (UPS_ATTRIBUTES, apply_create_defaults,
                                            check_create, check_set, final_state_unmet, merge_set,
                                            with_cancellation, with_state)
from workflow.ups.rules.state import UPSState
from workflow.kernel.attributes import Attr, Rejected
from workflow.kernel.json_model import first

NOW = "20250102030405"
STUDY = "1.2.826.0.1.3680043.10.2.1"
SERIES = "1.2.826.0.1.3680043.10.2.2"
UPS_UID = "1.2.826.0.1.3680043.10.2.9"
CT = "1.2.840.10008.5.1.4.1.1.2"


def v(vr: str, *values) -> dict:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def sq(*items: dict) -> dict:
    return {"vr": "SQ", "Value": list(items)}


def code(value: str = "110001", scheme: str = "DCM", meaning: str = "Image Processing") -> dict:
    return {"00080100": v("SH", value), "00080102": v("SH", scheme), "00080104": v("LO", meaning)}


def input_item() -> dict:
    return {
        "0040E020": v("CS", "DICOM"), "0020000D": v("UI", STUDY), "0020000E": v("UI", SERIES),
        "00081199": sq({"00081150": v("UI", CT), "00081155": v("UI", SERIES + ".1")}),
        "0040E021": sq({"00080054": v("AE", "ARCHIVE")}),
    }


def request_item() -> dict:
    return {
        "0020000D": v("UI", STUDY), "00080050": v("SH", "ACC1"), "00080051": sq(), "00400026": sq(),
        "00400027": sq(), "00401001": v("SH", "RP1"), "00321060": v("LO"), "00321064": sq(),
    }


def workitem() -> dict:
    """An N-CREATE data set with every Type 1 and Type 2 attribute of Table CC.2.5-3."""
    return {
        "00741200": v("CS", "MEDIUM"), "00741204": v("LO", "Liver segmentation"), "00741202": v("LO", "AI"),
        "00741210": sq(), "00404025": sq(code("AI-1", "99WFM", "AI node")), "00404026": sq(), "00404027": sq(),
        "00404005": v("DT", "20250102080000"), "00404018": sq(code()), "00400400": v("LT"),
        "00404041": v("CS", "READY"), "00404021": sq(input_item()), "0020000D": v("UI", STUDY),
        "00100010": v("PN", {"Alphabetic": "Doe^Jane"}), "00100020": v("LO", "PID1"), "00100021": v("LO"),
        "00100024": sq(), "00101002": sq(), "00100030": v("DA", "19700101"), "00100040": v("CS", "F"),
        "00380010": v("LO"), "00380014": sq(), "00081080": v("LO"), "00081084": sq(),
        "0040A370": sq(request_item()), "00741000": v("CS", "SCHEDULED"), "00741002": sq(), "00741216": sq(),
    }


def rejected(ds: dict, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        check_create(ds, **kwargs)
    assert len(info.value.comment) <= 64 and info.value.comment.isascii()
    return info.value


def walk(rules: tuple[Attr, ...]) -> Iterator[Attr]:
    for rule in rules:
        yield rule
        yield from walk(rule.items)


TOP = {rule.keyword: rule for rule in UPS_ATTRIBUTES}
TYPE1 = [r.keyword for r in UPS_ATTRIBUTES if r.n_create == "1"]
TYPE2 = [r.keyword for r in UPS_ATTRIBUTES if r.n_create == "2" and not r.scp_fills]


# --- the table itself ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", list(walk(UPS_ATTRIBUTES)), ids=lambda r: r.keyword)
def test_rows_match_pydicom_dictionary(rule: Attr) -> None:
    tag = int(rule.tag, 16)
    assert keyword_for_tag(tag) == rule.keyword
    assert rule.is_sequence is (dictionary_VR(tag) == "SQ")
    assert rule.multi is (dictionary_VM(tag) != "1")
    assert rule.n_create in {"1", "1C", "2", "2C", "3", "-", "empty", "not allowed"}
    assert rule.n_set in {"1", "1C", "2", "3", "-", "lock", "not allowed"}
    assert rule.final in {"R", "RC", "P", "X", "O", ""}
    assert rule.match in {"R", "O", "U", "*", "-"}
    assert rule.matching in {"", "single", "single/range", "single+wildcard", "uid_list", "sequence"}
    assert rule.return_key in {"1", "1C", "2", "2C", "3", "-"}
    assert (rule.match == "-") is (rule.matching == "")


def test_top_level_tags_unique_and_push_uid_right() -> None:
    assert len({r.tag for r in UPS_ATTRIBUTES}) == len(UPS_ATTRIBUTES)
    assert UID(ups.UPS_PUSH_SOP_CLASS_UID).name == "Unified Procedure Step - Push SOP Class"


def test_table_has_the_rows_the_digest_lists() -> None:
    wanted = {
        "ScheduledProcedureStepPriority", "ScheduledProcedureStepModificationDateTime", "ProcedureStepLabel",
        "WorklistLabel", "ScheduledStationNameCodeSequence", "ScheduledStationClassCodeSequence",
        "ScheduledStationGeographicLocationCodeSequence", "ScheduledHumanPerformersSequence",
        "ScheduledProcedureStepStartDateTime", "ExpectedCompletionDateTime", "ScheduledWorkitemCodeSequence",
        "InputReadinessState", "InputInformationSequence", "StudyInstanceUID",
        "ScheduledProcessingParametersSequence", "CommentsOnTheScheduledProcedureStep",
        "ScheduledProcedureStepExpirationDateTime", "OutputDestinationSequence", "PatientName", "PatientID",
        "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "AdmissionID", "IssuerOfAdmissionIDSequence",
        "ReferencedRequestSequence", "ReplacedProcedureStepSequence", "ProcedureStepState",
        "ProcedureStepProgressInformationSequence", "UnifiedProcedureStepPerformedProcedureSequence",
        "TransactionUID", "SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet",
    }
    assert wanted <= set(TOP)
    performed = {r.keyword for r in TOP["UnifiedProcedureStepPerformedProcedureSequence"].items}
    assert {"ActualHumanPerformersSequence", "PerformedStationNameCodeSequence", "OutputInformationSequence",
            "PerformedProcedureStepStartDateTime", "PerformedProcedureStepEndDateTime",
            "PerformedWorkitemCodeSequence"} <= performed
    progress = {r.keyword for r in TOP["ProcedureStepProgressInformationSequence"].items}
    assert {"ProcedureStepProgress", "ProcedureStepProgressDescription", "ProcedureStepCancellationDateTime",
            "ProcedureStepDiscontinuationReasonCodeSequence", "ReasonForCancellation",
            "ProcedureStepCommunicationsURISequence"} <= progress


# --- N-CREATE ------------------------------------------------------------------------------------------

def test_complete_workitem_passes() -> None:
    notes = check_create(workitem())
    assert "TransactionUID absent; treated as empty" in notes
    assert any(note.startswith("ScheduledHumanPerformersSequence absent (Type 2C") for note in notes)


@pytest.mark.parametrize("keyword", TYPE1)
def test_type1_missing_is_0120(keyword: str) -> None:
    ds = workitem()
    del ds[TOP[keyword].tag]
    error = rejected(ds)
    assert error.status.code == 0x0120 and error.tags == (TOP[keyword].tag,)


@pytest.mark.parametrize("keyword", TYPE1)
def test_type1_empty_is_0121(keyword: str) -> None:
    ds = workitem()
    ds[TOP[keyword].tag] = v(ds[TOP[keyword].tag]["vr"])
    error = rejected(ds)
    assert error.status.code == 0x0121 and error.tags == (TOP[keyword].tag,)


@pytest.mark.parametrize("keyword", TYPE2)
def test_type2_missing_is_accepted_as_empty_unless_the_site_refuses_it(keyword: str) -> None:
    ds = workitem()
    del ds[TOP[keyword].tag]
    assert f"{keyword} absent (Type 2); treated as empty" in check_create(ds)
    stored, _ = apply_create_defaults(ds, NOW, "WFM")
    assert TOP[keyword].tag in stored and first(stored, TOP[keyword].tag) is None  # stored empty
    assert rejected(ds, type2_absent="refuse").status.code == 0x0120


def test_refused_type2_absences_are_all_named() -> None:
    """An integrator finds every missing attribute at once: the Attribute Identifier List names them all,
    nested ones included (the Error Comment has room for one)."""
    ds = workitem()
    request = ds["0040A370"]["Value"][0]
    for keyword in ("PatientName", "PatientBirthDate"):
        del ds[TOP[keyword].tag]
    del request["00400026"]  # Order Placer Identifier Sequence, Type 2 inside a Referenced Request item
    error = rejected(ds, type2_absent="refuse")
    assert error.status.code == 0x0120
    assert set(error.tags) == {TOP["PatientName"].tag, TOP["PatientBirthDate"].tag, "00400026"}
    assert "(+2 more)" in error.comment


def test_worklist_label_may_be_left_to_the_scp() -> None:
    ds = workitem()
    del ds["00741202"]
    assert "WorklistLabel absent; the SCP fills in the default Worklist Label" in check_create(ds)


def test_transaction_uid_with_a_value_is_0106() -> None:
    ds = workitem() | {"00081195": v("UI", "1.2.3.4")}
    error = rejected(ds)
    assert error.status.code == 0x0106 and error.tags == ("00081195",)
    check_create(workitem() | {"00081195": v("UI")})  # sent empty, as Table CC.2.5-3 asks


@pytest.mark.parametrize("state", ["IN PROGRESS", "COMPLETED", "FOO"])
def test_state_other_than_scheduled_is_c309_before_anything_else(state: str) -> None:
    ds = workitem()
    ds["00741000"] = v("CS", state)
    del ds["00741200"]  # also missing a Type 1: C309 still wins (CC.2.5.3)
    assert rejected(ds).status.code == 0xC309


@pytest.mark.parametrize("tag,bad", [
    ("00741200", "URGENT"), ("00404041", "DONE"), ("00100040", "X"),
    ("0020000D", "1.2.abc"), ("00404005", "tomorrow"), ("00100030", "1970-01-01"),
])
def test_bad_values_are_0106(tag: str, bad: str) -> None:
    ds = workitem()
    ds[tag] = v(ds[tag]["vr"], bad)
    error = rejected(ds)
    assert error.status.code == 0x0106 and error.tags == (tag,)


def test_malformed_nested_uid_is_0106_with_its_path() -> None:
    ds = workitem()
    ds["00404021"]["Value"][0]["00081199"]["Value"][0]["00081155"] = v("UI", "1.02.3")
    error = rejected(ds)
    assert error.status.code == 0x0106
    assert error.path == "InputInformationSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID"


def test_two_values_where_one_is_allowed_is_0106() -> None:
    ds = workitem()
    ds["00741200"] = v("CS", "HIGH", "LOW")
    assert rejected(ds).status.code == 0x0106


def test_not_allowed_attribute_is_0105() -> None:
    error = rejected(workitem() | {"00080018": v("UI", UPS_UID)})
    assert error.status.code == 0x0105 and error.tags == ("00080018",)


def test_progress_sequence_must_be_created_empty() -> None:
    ds = workitem()
    ds["00741002"] = sq({"00741004": v("DS", 50)})
    assert rejected(ds).status.code == 0x0106


def test_precedence_lists_every_missing_tag() -> None:
    ds = workitem()
    del ds["00741200"], ds["00741204"]
    ds["00404041"] = v("CS", "DONE")  # also invalid: missing comes first
    error = rejected(ds)
    assert error.status.code == 0x0120 and set(error.tags) == {"00741200", "00741204"}
    assert error.comment.endswith("(+1 more)")


def test_input_item_needs_one_retrieval_sequence() -> None:
    ds = workitem()
    del ds["00404021"]["Value"][0]["0040E021"]
    error = rejected(ds)
    assert error.status.code == 0x0120 and len(error.tags) == 5
    ds["00404021"]["Value"][0]["0040E025"] = sq({"00081190": v("UR", "https://pacs/dicom-web/studies/1")})
    check_create(ds)


def test_code_items() -> None:
    ds = workitem()
    ds["00404018"] = sq({"00080100": v("SH", "1"), "00080102": v("SH", "DCM")})
    assert rejected(ds).tags == ("00080104",)  # Code Meaning is Type 1
    ds["00404018"] = sq({"00080120": v("UR", "urn:oid:1.2.3"), "00080104": v("LO", "x")})
    check_create(ds)  # a URN code needs neither Code Value nor Coding Scheme Designator
    ds["00404018"] = sq({"00080104": v("LO", "x")})
    assert rejected(ds).tags == ("00080100",)


def test_content_item_value_follows_its_value_type() -> None:
    item = {"0040A040": v("CS", "DATE"), "0040A043": sq(code())}
    ds = workitem() | {"00741210": sq(item)}
    assert rejected(ds).tags == ("0040A121",)
    item["0040A121"] = v("DA", "20250101")
    check_create(ds)


def test_check_create_does_not_change_its_input() -> None:
    ds = workitem()
    before = copy.deepcopy(ds)
    check_create(ds)
    assert ds == before


# --- N-CREATE defaults ---------------------------------------------------------------------------------

def test_defaults_fill_and_report_only_visible_changes() -> None:
    ds = workitem()
    del ds["00741202"], ds["00741002"], ds["00741216"]
    ds["00081195"] = v("UI")
    before = copy.deepcopy(ds)
    out, changed = apply_create_defaults(ds, NOW, "DEFAULT", sop_instance_uid=UPS_UID)
    assert changed == ["WorklistLabel set to 'DEFAULT'"]
    assert out["00741202"] == v("LO", "DEFAULT")
    assert out["00404010"] == v("DT", NOW)
    assert out["00080016"] == v("UI", ups.UPS_PUSH_SOP_CLASS_UID)
    assert out["00080018"] == v("UI", UPS_UID)
    assert out["00741002"] == sq() and out["00741216"] == sq()
    assert "00081195" not in out  # the lock is never part of the data set
    assert ds == before


def test_defaults_report_replaced_scu_values() -> None:
    ds = workitem() | {"00404010": v("DT", "20000101"), "00080016": v("UI", "1.2.3")}
    out, changed = apply_create_defaults(ds, NOW, "DEFAULT", sop_instance_uid=UPS_UID)
    assert len(changed) == 2 and all("replaced by" in c for c in changed)
    assert out["00741202"] == v("LO", "AI")  # the SCU's own label stays


def test_without_instance_uid_the_final_state_check_asks_for_it() -> None:
    out, _ = apply_create_defaults(workitem(), NOW, "DEFAULT")
    assert "00080018" not in out
    assert "SOPInstanceUID (0008,0018)" in final_state_unmet(out, UPSState.CANCELED)


def test_empty_worklist_label_gets_the_default() -> None:
    ds = workitem() | {"00741202": v("LO")}
    out, changed = apply_create_defaults(ds, NOW, "DEFAULT", sop_instance_uid=UPS_UID)
    assert out["00741202"] == v("LO", "DEFAULT") and changed


# --- N-SET ---------------------------------------------------------------------------------------------

def performed_item(**overrides) -> dict:
    item = {
        "00404028": sq(code("AI-1", "99WFM", "AI node")), "00404050": v("DT", "20250102080100"),
        "00404019": sq(code()), "00404051": v("DT", "20250102081500"), "00404033": sq(),
    }
    return {k: val for k, val in (item | overrides).items() if val is not None}


def test_valid_modification_passes() -> None:
    check_set({"00741216": sq(performed_item()), "00741002": sq({"00741004": v("DS", 50)}),
               "00081195": v("UI", "1.2.3"), "00404010": v("DT", "19990101"),
               "00741200": v("CS", "HIGH")}, UPSState.IN_PROGRESS)


@pytest.mark.parametrize("tag", ["00100010", "00741000", "0040A370", "00080018", "00080016", "00100020"])
def test_not_allowed_in_n_set_is_0105(tag: str) -> None:
    with pytest.raises(Rejected) as info:
        check_set({tag: v(dictionary_VR(int(tag, 16)))}, UPSState.SCHEDULED)
    assert info.value.status.code == 0x0105 and info.value.tags == (tag,)


@pytest.mark.parametrize("state", [UPSState.COMPLETED, UPSState.CANCELED])
def test_n_set_in_final_state_is_c300(state: UPSState) -> None:
    with pytest.raises(Rejected) as info:
        check_set({"00741200": v("CS", "HIGH")}, state)
    assert info.value.status.code == 0xC300


@pytest.mark.parametrize("modification,code", [
    ({"00741200": v("CS")}, 0x0121),  # every UPS has a Priority
    ({"00404041": v("CS", "DONE")}, 0x0106),
    ({"00404034": sq({"00404037": v("PN", {"Alphabetic": "Roe^Ann"}), "00404036": v("LO", "X")})}, 0x0121),
    ({"00404021": {"vr": "LO", "Value": ["x"]}}, 0x0106),
])
def test_n_set_value_rules(modification: dict, code: int) -> None:
    with pytest.raises(Rejected) as info:
        check_set(modification, UPSState.IN_PROGRESS)
    assert info.value.status.code == code


def test_merge_replaces_sequences_whole_and_stamps() -> None:
    current, _ = apply_create_defaults(workitem(), "20250101000000", "AI", sop_instance_uid=UPS_UID)
    current["00404025"] = sq(code("A", "99WFM", "a"), code("B", "99WFM", "b"))
    before = copy.deepcopy(current)
    modification = {"00404025": sq(code("C", "99WFM", "c")), "00741200": v("CS", "HIGH"),
                    "00081195": v("UI", "1.2.3"), "00404010": v("DT", "19990101")}
    merged = merge_set(current, modification, NOW)
    assert merged["00404025"] == sq(code("C", "99WFM", "c"))
    assert merged["00741200"] == v("CS", "HIGH")
    assert merged["00741204"] == current["00741204"]
    assert merged["00404010"] == v("DT", NOW)
    assert "00081195" not in merged
    assert current == before


@pytest.mark.parametrize("old,new,expected", [
    (None, None, None), ("ISO_IR 100", None, "ISO_IR 100"), (None, "ISO_IR 100", "ISO_IR 100"),
    ("ISO_IR 100", "ISO_IR 100", "ISO_IR 100"), ("ISO_IR 100", "ISO_IR 126", "ISO_IR 192"),
])
def test_merge_keeps_a_character_set_covering_both(old, new, expected) -> None:
    current = {"00080005": v("CS", old)} if old else {}
    modification = {"00080005": v("CS", new)} if new else {}
    merged = merge_set(current, modification, NOW)
    assert first(merged, "00080005") == expected


# --- Final State ---------------------------------------------------------------------------------------

def created() -> dict:
    ds, _ = apply_create_defaults(workitem(), "20250101000000", "AI", sop_instance_uid=UPS_UID)
    return with_state(ds, UPSState.IN_PROGRESS)


def test_fresh_ups_meets_neither_final_state() -> None:
    ds = created()
    assert final_state_unmet(ds, UPSState.COMPLETED) == ["UnifiedProcedureStepPerformedProcedureSequence (0074,1216)"]
    assert final_state_unmet(ds, "CANCELED") == ["ProcedureStepProgressInformationSequence (0074,1002)"]


def test_completed_needs_the_p_rows_canceled_does_not() -> None:
    ds = created() | {"00741216": sq(performed_item(**{"00404051": None, "00404019": sq()}))}
    assert final_state_unmet(ds, UPSState.COMPLETED) == [
        "UnifiedProcedureStepPerformedProcedureSequence[0].PerformedWorkitemCodeSequence (0040,4019)",
        "UnifiedProcedureStepPerformedProcedureSequence[0].PerformedProcedureStepEndDateTime (0040,4051)",
    ]
    assert final_state_unmet(ds, UPSState.CANCELED) == ["ProcedureStepProgressInformationSequence (0074,1002)"]
    ds["00741216"] = sq(performed_item())  # Output Information Sequence present and empty is enough
    assert final_state_unmet(ds, UPSState.COMPLETED) == []


def test_canceled_needs_the_x_rows_completed_does_not() -> None:
    ds = with_cancellation(created(), NOW)
    assert final_state_unmet(ds, UPSState.CANCELED) == [
        "ProcedureStepProgressInformationSequence[0].ProcedureStepDiscontinuationReasonCodeSequence (0074,100E)"]
    ds = with_cancellation(ds, "20300101", reason="not needed", reason_codes=(code("110513", "DCM", "x"),))
    assert final_state_unmet(ds, UPSState.CANCELED) == []
    item = ds["00741002"]["Value"][0]
    assert item["00404052"] == v("DT", NOW)  # an existing Cancellation DateTime is kept
    assert item["00741238"] == v("LT", "not needed")
    assert final_state_unmet(ds, UPSState.COMPLETED) == ["UnifiedProcedureStepPerformedProcedureSequence (0074,1216)"]


def test_r_rows_bind_both_final_states() -> None:
    ds = created()
    del ds["00741200"]
    for target in (UPSState.COMPLETED, UPSState.CANCELED):
        assert "ScheduledProcedureStepPriority (0074,1200)" in final_state_unmet(ds, target)


def test_final_state_target_must_be_final() -> None:
    for target in (UPSState.SCHEDULED, "IN PROGRESS", "DONE"):
        with pytest.raises(ValueError):
            final_state_unmet(created(), target)
