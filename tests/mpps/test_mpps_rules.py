"""The MPPS SOP Class (PS3.4 F.7) as data and the N-CREATE / N-SET decisions on DICOM JSON."""

from __future__ import annotations

import copy
from typing import Iterator

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from workflow.mpps.rules import procedure_step as mpps
from workflow.kernel import statuses
from workflow.kernel.attributes import PRECEDENCE, Attr, Rejected
from workflow.mpps.rules.procedure_step import (ACCEPTED_UNCHECKED, MPPS_ATTRIBUTES, STATE_TABLE, STATUS_CONDITIONS, Decision,
                                  MPPSStatus, check_create, decide_create, decide_set,
                                  expected_instances, final_unmet, merge_set, request_keys, state_table_markdown)

STUDY = "1.2.826.0.1.3680043.10.3.1"
SERIES_1 = "1.2.826.0.1.3680043.10.3.2"
SERIES_2 = "1.2.826.0.1.3680043.10.3.3"
CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR
PATIENT_CLASS = "1.2.840.10008.3.1.2.1.1"  # Detached Patient Management (retired), as modalities send

P, D, C = MPPSStatus.IN_PROGRESS, MPPSStatus.DISCONTINUED, MPPSStatus.COMPLETED
STATUS_TAG, END_DATE, END_TIME, SERIES_SEQ = "00400252", "00400250", "00400251", "00400340"


def put(ds: Dataset, keyword: str, value) -> None:
    """Set a value, invalid ones included: the tests build wrong data on purpose."""
    if keyword in ds:
        delattr(ds, keyword)  # an element checks new values with the mode it was created under
    with config.disable_value_validation():
        setattr(ds, keyword, value)


def code(value: str = "CTHEAD", scheme: str = "99LOCAL", meaning: str = "CT head") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def scheduled_step(accession: str = "ACC1", rp_id: str = "RP1", sps_id: str = "SPS1",
                   study: str = STUDY) -> Dataset:
    item = Dataset()
    put(item, "StudyInstanceUID", study)
    item.ReferencedStudySequence = []
    item.AccessionNumber = accession
    item.RequestedProcedureID = rp_id
    item.RequestedProcedureDescription = "CT head"
    item.ScheduledProcedureStepID = sps_id
    item.ScheduledProcedureStepDescription = "CT head plain"
    item.ScheduledProtocolCodeSequence = [code()]
    return item


def create_dataset(**changes) -> dict:
    """A complete N-CREATE data set: every Type 1 and Type 2 attribute of Table F.7.2-1, as a modality sends
    it (Performed Series Sequence and End Date/Time created empty)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ScheduledStepAttributesSequence = [scheduled_step()]
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT ROOM 1"
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20250102"
    ds.PerformedProcedureStepStartTime = "080000"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT head"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = [code()]
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    for keyword, value in changes.items():
        put(ds, keyword, value)
    with config.disable_value_validation():
        return ds.to_json_dict()


def series(uid: str, images: list[tuple[str, str]] = (), non_images: list[tuple[str, str]] = (),
           protocol: str | None = "Head") -> Dataset:
    item = Dataset()
    item.PerformingPhysicianName = ""
    if protocol is not None:
        item.ProtocolName = protocol
    item.OperatorsName = ["Tech^One", "Tech^Two"]
    put(item, "SeriesInstanceUID", uid)
    item.SeriesDescription = "Axial"
    item.RetrieveAETitle = "PACS"
    item.ReferencedImageSequence = [_ref(*pair) for pair in images]
    item.ReferencedNonImageCompositeSOPInstanceSequence = [_ref(*pair) for pair in non_images]
    return item


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    put(item, "ReferencedSOPInstanceUID", sop_instance)
    return item


def completion(status: str = "COMPLETED", *series_items: Dataset, **extra) -> dict:
    """The final N-SET a modality sends."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20250102"
    ds.PerformedProcedureStepEndTime = "081500"
    ds.PerformedSeriesSequence = list(series_items) or [series(SERIES_1, [(CT, SERIES_1 + ".1")])]
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds.to_json_dict()


def rejected(ds: dict, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        check_create(ds, **kwargs)
    assert len(info.value.comment) <= 64 and info.value.comment.isascii()
    return info.value


def tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def walk(rules: tuple[Attr, ...]) -> Iterator[Attr]:
    for rule in rules:
        yield rule
        yield from walk(rule.items)


# --- The table -------------------------------------------------------------------------------------------

def test_every_tag_and_keyword_is_pydicoms():
    for rule in walk(MPPS_ATTRIBUTES):
        assert keyword_for_tag(int(rule.tag, 16)) == rule.keyword, rule
        assert rule.multi == ("n" in dictionary_VM(int(rule.tag, 16))), rule
        assert rule.is_sequence == (dictionary_VR(int(rule.tag, 16)) == "SQ"), rule
    for keyword in ACCEPTED_UNCHECKED:
        assert tag_for_keyword(keyword) is not None, keyword
        assert tag(keyword) not in mpps.BY_TAG


def test_requirement_codes_are_the_tables():
    codes = {"1", "1C", "2", "3", mpps.NOT_ALLOWED}
    for rule in walk(MPPS_ATTRIBUTES):
        assert rule.n_create in codes and rule.n_set in codes, rule
        assert rule.final in ("", "1", "2", mpps.INSTANCE_LIST), rule
    top = {rule.keyword: rule for rule in MPPS_ATTRIBUTES}
    settable = {k for k, rule in top.items() if rule.n_set != mpps.NOT_ALLOWED}
    assert settable == {
        "SpecificCharacterSet", "PerformedProcedureStepStatus", "PerformedProcedureStepDescription",
        "PerformedProcedureTypeDescription", "ProcedureCodeSequence", "ReasonForPerformedProcedureCodeSequence",
        "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "CommentsOnThePerformedProcedureStep",
        "PerformedProcedureStepDiscontinuationReasonCodeSequence", "PerformedProtocolCodeSequence",
        "PerformedSeriesSequence"}
    assert {k for k, rule in top.items() if rule.final == "1"} == {
        "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedSeriesSequence"}


# --- N-CREATE --------------------------------------------------------------------------------------------

def test_complete_create_is_accepted_without_notes():
    assert check_create(create_dataset()) == []
    assert check_create(create_dataset(), type2_absent="refuse") == []


def test_absent_type2_is_taken_as_empty_and_noted():
    ds = create_dataset()
    for keyword in ("PatientName", "StudyID", "PerformedSeriesSequence", "PerformedProcedureStepEndDate"):
        del ds[tag(keyword)]
    del ds["00400270"]["Value"][0][tag("AccessionNumber")]
    notes = check_create(ds)
    assert "PatientName absent (Type 2); treated as empty" in notes
    assert "ScheduledStepAttributesSequence[0].AccessionNumber absent (Type 2); treated as empty" in notes
    assert len(notes) == 5

    strict = rejected(ds, type2_absent="refuse")
    assert strict.status == statuses.MISSING_ATTRIBUTE
    assert set(strict.tags) == {tag("PatientName"), tag("StudyID"), tag("PerformedSeriesSequence"),
                                tag("PerformedProcedureStepEndDate"), tag("AccessionNumber")}


@pytest.mark.parametrize("value", ["COMPLETED", "DISCONTINUED", "SCHEDULED", "in progress"])
def test_create_with_another_status_is_0106_with_the_attribute(value):
    error = rejected(create_dataset(PerformedProcedureStepStatus=value))
    assert error.status == statuses.INVALID_ATTRIBUTE_VALUE
    assert error.tags == (STATUS_TAG,)


def test_create_without_status_is_0120_and_with_empty_status_0121():
    ds = create_dataset()
    del ds[STATUS_TAG]
    assert rejected(ds).status == statuses.MISSING_ATTRIBUTE
    ds[STATUS_TAG] = {"vr": "CS", "Value": ["  "]}
    assert rejected(ds).status == statuses.MISSING_ATTRIBUTE_VALUE


def test_missing_type1_is_0120_listing_every_missing_attribute():
    ds = create_dataset()
    for keyword in ("Modality", "PerformedStationAETitle", "PerformedProcedureStepStartTime"):
        del ds[tag(keyword)]
    error = rejected(ds)
    assert error.status == statuses.MISSING_ATTRIBUTE
    assert set(error.tags) == {tag("Modality"), tag("PerformedStationAETitle"),
                               tag("PerformedProcedureStepStartTime")}
    assert "(+2 more)" in error.comment


def test_missing_type1_in_an_item_is_0120_with_its_path():
    ds = create_dataset()
    del ds["00400270"]["Value"][0]["0020000D"]
    error = rejected(ds)
    assert (error.status, error.tags) == (statuses.MISSING_ATTRIBUTE, ("0020000D",))
    assert error.path == "ScheduledStepAttributesSequence[0].StudyInstanceUID"


@pytest.mark.parametrize("keyword, value", [
    ("PerformedStationAETitle", ""),
    ("PerformedProcedureStepID", ""),
    ("ScheduledStepAttributesSequence", []),
])
def test_empty_type1_is_0121(keyword, value):
    error = rejected(create_dataset(**{keyword: value}))
    assert (error.status, error.tags) == (statuses.MISSING_ATTRIBUTE_VALUE, (tag(keyword),))


@pytest.mark.parametrize("changes, keyword", [
    ({"ScheduledStepAttributesSequence": [scheduled_step(study="1.2.abc")]}, "StudyInstanceUID"),
    ({"ScheduledStepAttributesSequence": [scheduled_step(study="1.02.3")]}, "StudyInstanceUID"),
    ({"PerformedStationAETitle": "A\\B"}, "PerformedStationAETitle"),
    ({"PerformedProcedureStepStartDate": "2025-01-02"}, "PerformedProcedureStepStartDate"),
    ({"PerformedProcedureStepStartTime": "25"}, "PerformedProcedureStepStartTime"),
    ({"PatientSex": "X"}, "PatientSex"),
    ({"PerformedSeriesSequence": [series("1.2.x")]}, "SeriesInstanceUID"),
    ({"PerformedSeriesSequence": [series(SERIES_1, [(CT, "not a uid")])]}, "ReferencedSOPInstanceUID"),
])
def test_invalid_values_are_0106(changes, keyword):
    error = rejected(create_dataset(**changes))
    assert (error.status, error.tags) == (statuses.INVALID_ATTRIBUTE_VALUE, (tag(keyword),))


def test_a_sequence_that_is_not_one_and_too_many_values_are_0106():
    ds = create_dataset()
    ds["00400270"] = {"vr": "UI", "Value": [STUDY]}
    assert rejected(ds).status == statuses.INVALID_ATTRIBUTE_VALUE
    ds = create_dataset()
    ds[tag("Modality")] = {"vr": "CS", "Value": ["CT", "MR"]}
    assert rejected(ds).tags == (tag("Modality"),)


def test_code_items_need_their_values():
    no_meaning = Dataset()
    no_meaning.CodeValue, no_meaning.CodingSchemeDesignator = "X", "99LOCAL"
    assert check_create(create_dataset(PerformedProtocolCodeSequence=[no_meaning])) == []  # F.7.2-1e: 3/3
    step = scheduled_step()
    step.ScheduledProtocolCodeSequence = [no_meaning]  # F.7.2-1a: Code Meaning 1/1
    assert rejected(create_dataset(ScheduledStepAttributesSequence=[step])).tags == ("00080104",)
    no_scheme = Dataset()
    no_scheme.CodeValue, no_scheme.CodeMeaning = "X", "x"
    assert rejected(create_dataset(ProcedureCodeSequence=[no_scheme])).tags == ("00080102",)


def test_other_attributes_of_the_iod_pass_unchecked():
    ds = create_dataset()
    ds[tag("TotalTimeOfFluoroscopy")] = {"vr": "US", "Value": [12]}
    ds[tag("ExposureDoseSequence")] = {"vr": "SQ", "Value": [{"00400302": {"vr": "US", "Value": [3]}}]}
    ds["00091010"] = {"vr": "LO", "Value": ["private"]}
    assert check_create(ds) == []


def test_comments_fit_the_error_comment_element():
    ds = create_dataset(PerformedSeriesSequence=[series(SERIES_1, [(CT, "1.2.3.x" * 20)])])
    error = rejected(ds)
    assert len(error.comment) <= 64


def test_duplicate_create_is_0111():
    assert decide_create(exists=False) == Decision(statuses.SUCCESS, P)
    assert decide_create(exists=True).status == statuses.DUPLICATE_SOP_INSTANCE


# --- N-SET -----------------------------------------------------------------------------------------------

def stored() -> dict:
    return create_dataset()


def test_update_while_in_progress_keeps_the_status():
    update = Dataset()
    update.PerformedSeriesSequence = [series(SERIES_1, [(CT, SERIES_1 + ".1")])]
    update.PerformedProcedureStepDescription = "CT head and neck"
    decision = decide_set(P, update.to_json_dict(), stored=stored())
    assert decision.accepted and decision.status == statuses.SUCCESS
    assert decision.new_status is None and decision.notes == ()
    explicit = {STATUS_TAG: {"vr": "CS", "Value": ["IN PROGRESS"]}}
    assert decide_set(P, explicit) == Decision(statuses.SUCCESS)


def test_completed_when_final_requirements_are_met():
    decision = decide_set(P, completion(), stored=stored())
    assert decision == Decision(statuses.SUCCESS, C)


def test_final_requirements_may_be_met_by_earlier_n_sets():
    earlier = merge_set(stored(), completion("IN PROGRESS"))
    assert decide_set(P, {STATUS_TAG: {"vr": "CS", "Value": ["COMPLETED"]}}, stored=earlier).new_status == C


def test_completed_without_final_requirements_is_0121_naming_them():
    last = completion()
    del last[END_DATE]
    last[END_TIME] = {"vr": "TM"}
    decision = decide_set(P, last, stored=stored())
    assert decision.status == statuses.MISSING_ATTRIBUTE_VALUE and decision.new_status is None
    assert decision.tags == (END_DATE, END_TIME)
    assert decision.comment == "PerformedProcedureStepEndDate missing for COMPLETED (+1 more)"


def test_completed_with_an_empty_performed_series_sequence_is_0121():
    last = completion()
    last[SERIES_SEQ] = {"vr": "SQ", "Value": []}
    decision = decide_set(P, last, stored=stored())
    assert (decision.status, decision.tags) == (statuses.MISSING_ATTRIBUTE_VALUE, (SERIES_SEQ,))


def test_a_series_item_without_its_type1_attributes_is_0121():
    decision = decide_set(P, completion("COMPLETED", series(SERIES_1, protocol=None)), stored=stored())
    assert (decision.status, decision.tags) == (statuses.MISSING_ATTRIBUTE_VALUE, (tag("ProtocolName"),))


def test_final_unmet_lists_paths():
    ds = stored()
    assert final_unmet(ds, C) == ["PerformedProcedureStepEndDate (0040,0250)",
                                  "PerformedProcedureStepEndTime (0040,0251)", "PerformedSeriesSequence (0040,0340)"]
    ds = merge_set(ds, completion())
    ds[SERIES_SEQ]["Value"][0].pop(tag("SeriesInstanceUID"))
    assert final_unmet(ds, "DISCONTINUED") == ["PerformedSeriesSequence[0].SeriesInstanceUID (0020,000E)"]
    assert final_unmet(merge_set(stored(), completion()), C) == []
    with pytest.raises(ValueError):
        final_unmet(ds, P)


def test_discontinued_with_a_reason_code():
    reason = code("110514", "DCM", "Incorrect worklist entry selected")
    last = completion("DISCONTINUED", series(SERIES_1),
                      PerformedProcedureStepDiscontinuationReasonCodeSequence=[reason])
    decision = decide_set(P, last, stored=stored())
    assert decision.status == statuses.SUCCESS and decision.new_status == D
    assert decision.notes == (
        "PerformedProcedureStepDiscontinuationReasonCodeSequence set but not created by the N-CREATE; accepted",
        "DISCONTINUED without image or non-image references (F.7.2.2.2: only if none were created)")


def test_discontinued_needs_the_final_requirements_too():
    decision = decide_set(P, {STATUS_TAG: {"vr": "CS", "Value": ["DISCONTINUED"]}}, stored=stored())
    assert decision.status == statuses.MISSING_ATTRIBUTE_VALUE
    assert decision.tags == (END_DATE, END_TIME, SERIES_SEQ)


def test_without_the_stored_data_set_final_requirements_are_the_callers():
    assert decide_set(P, {STATUS_TAG: {"vr": "CS", "Value": ["COMPLETED"]}}).new_status == C


@pytest.mark.parametrize("final", [C, D])
@pytest.mark.parametrize("modification", [
    {}, {STATUS_TAG: {"vr": "CS", "Value": ["IN PROGRESS"]}}, {STATUS_TAG: {"vr": "CS", "Value": ["COMPLETED"]}},
    {STATUS_TAG: {"vr": "CS", "Value": ["DISCONTINUED"]}}, {STATUS_TAG: {"vr": "CS", "Value": ["BOGUS"]}},
    {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Other^Name"}]}},
])
def test_after_a_final_status_every_n_set_is_refused_with_a710(final, modification):
    decision = decide_set(final, modification, stored=stored())
    assert decision.status == statuses.PROCESSING_FAILURE and decision.status.hex == "0110"
    assert decision.error_id == 0xA710
    assert decision.comment == "Performed Procedure Step Object may no longer be updated"
    assert decision.new_status is None and not decision.accepted


def test_n_set_of_an_unknown_instance_is_0112():
    decision = decide_set(None, completion())
    assert (decision.status.code, decision.new_status) == (0x0112, None)


@pytest.mark.parametrize("keyword, value", [
    ("PatientName", "Other^Name"), ("Modality", "MR"), ("PerformedStationAETitle", "CT2"),
    ("PerformedProcedureStepStartDate", "20250103"), ("StudyID", "2"),
    ("ScheduledStepAttributesSequence", [scheduled_step()]),
])
def test_attributes_not_allowed_in_n_set_are_0105(keyword, value):
    modification = Dataset()
    setattr(modification, keyword, value)
    modification.PerformedProcedureStepStatus = "COMPLETED"
    decision = decide_set(P, modification.to_json_dict(), stored=stored())
    assert (decision.status.code, decision.tags, decision.new_status) == (0x0105, (tag(keyword),), None)


def test_a_bad_or_empty_status_in_n_set():
    bad = decide_set(P, {STATUS_TAG: {"vr": "CS", "Value": ["SCHEDULED"]}}, stored=stored())
    assert (bad.status, bad.tags) == (statuses.INVALID_ATTRIBUTE_VALUE, (STATUS_TAG,))
    empty = decide_set(P, {STATUS_TAG: {"vr": "CS"}}, stored=stored())
    assert (empty.status, empty.tags) == (statuses.MISSING_ATTRIBUTE_VALUE, (STATUS_TAG,))


def test_absent_type2_in_a_replaced_item_is_noted_or_refused():
    item = series(SERIES_1, [(CT, SERIES_1 + ".1")])
    del item.SeriesDescription
    update = {SERIES_SEQ: {"vr": "SQ", "Value": [item.to_json_dict()]}}
    decision = decide_set(P, update, stored=stored())
    assert decision.accepted
    assert decision.notes == ("PerformedSeriesSequence[0].SeriesDescription absent (Type 2); treated as empty",)
    strict = decide_set(P, update, stored=stored(), type2_absent="refuse")
    assert (strict.status, strict.tags) == (statuses.MISSING_ATTRIBUTE_VALUE, (tag("SeriesDescription"),))


# --- merge, expected instances, request keys -------------------------------------------------------------

def test_merge_replaces_sequences_whole_and_changes_neither_input():
    current = merge_set(stored(), completion("IN PROGRESS", series(SERIES_1, [(CT, SERIES_1 + ".1")]),
                                             series(SERIES_2, [(CT, SERIES_2 + ".1")])))
    before = copy.deepcopy(current)
    modification = completion("COMPLETED", series(SERIES_2, [(CT, SERIES_2 + ".9")]))
    merged = merge_set(current, modification)
    assert current == before
    assert merged[SERIES_SEQ] == modification[SERIES_SEQ] and merged[SERIES_SEQ] is not modification[SERIES_SEQ]
    assert expected_instances(merged) == [(SERIES_2, CT, SERIES_2 + ".9")]
    assert merged[STATUS_TAG]["Value"] == ["COMPLETED"]
    assert merged[tag("PatientID")] == current[tag("PatientID")]


def test_merge_combines_character_sets():
    base = stored()  # ISO_IR 100
    same = merge_set(base, {"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}})
    assert same["00080005"]["Value"] == ["ISO_IR 100"]
    other = merge_set(base, {"00080005": {"vr": "CS", "Value": ["ISO_IR 144"]}})
    assert other["00080005"]["Value"] == ["ISO_IR 192"]
    none_before = dict(base)
    del none_before["00080005"]
    assert merge_set(none_before, {"00080005": {"vr": "CS", "Value": ["ISO_IR 144"]}})["00080005"]["Value"] == [
        "ISO_IR 144"]


def test_expected_instances_over_two_series_with_images_and_a_non_image_object():
    ds = merge_set(stored(), completion(
        "COMPLETED",
        series(SERIES_1, [(CT, SERIES_1 + ".1"), (CT, SERIES_1 + ".2"), (CT, SERIES_1 + ".1")]),
        series(SERIES_2, [(CT, SERIES_2 + ".1")], [(SR, SERIES_2 + ".100")]),
    ))
    assert expected_instances(ds) == [
        (SERIES_1, CT, SERIES_1 + ".1"), (SERIES_1, CT, SERIES_1 + ".2"),
        (SERIES_2, CT, SERIES_2 + ".1"), (SERIES_2, SR, SERIES_2 + ".100"),
    ]
    assert expected_instances(stored()) == []


def test_request_keys_per_scheduled_step_item():
    unscheduled = Dataset()
    unscheduled.StudyInstanceUID = STUDY
    unscheduled.AccessionNumber = ""
    ds = create_dataset(ScheduledStepAttributesSequence=[scheduled_step("ACC1", "RP1", "SPS1"),
                                                         scheduled_step("ACC2 ", "RP2", "SPS2"), unscheduled])
    assert request_keys(ds) == [
        {"study_instance_uid": STUDY, "accession_number": "ACC1", "requested_procedure_id": "RP1",
         "scheduled_procedure_step_id": "SPS1"},
        {"study_instance_uid": STUDY, "accession_number": "ACC2", "requested_procedure_id": "RP2",
         "scheduled_procedure_step_id": "SPS2"},
        {"study_instance_uid": STUDY, "accession_number": None, "requested_procedure_id": None,
         "scheduled_procedure_step_id": None},
    ]


# --- Conformance -----------------------------------------------------------------------------------------

def test_status_conditions_cover_every_status_decided():
    listed = {status for status, _ in STATUS_CONDITIONS}
    decided = {cell.outcome.status for cells in STATE_TABLE.values() for cell in cells}
    decided |= {cell.otherwise.status for cells in STATE_TABLE.values() for cell in cells if cell.otherwise}
    decided |= set(PRECEDENCE)
    assert decided <= listed


def test_state_table_markdown():
    lines = state_table_markdown().splitlines()
    assert lines[0] == "| Event | no such instance | IN PROGRESS | DISCONTINUED | COMPLETED |"
    assert len(lines) == 2 + len(STATE_TABLE)
    assert "failure 0110 (Error ID A710)" in lines[3]
    assert "if Final State requirements met: → COMPLETED; else failure 0121" in lines[-1]
