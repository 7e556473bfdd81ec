"""The Modality Performed Procedure Step SOP Class (PS3.4 F.7): its attributes (Table F.7.2-1: N-CREATE,
N-SET and Final State columns) as data, its three states as a `transitions` Machine declared as a table,
and the decisions the MPPS SCP takes for N-CREATE and N-SET.

Pure: works on the DICOM JSON model (PS3.18 F.2) like the IAN and UPS rules. The service looks the
instance up, passes its status and stored data set, and acts on what comes back (answer the status,
store `merge_set`'s result, take `expected_instances` of a COMPLETED step as the study's expected set).

Source: PS3.4 Annex F, 2020 text (chsasank/dicom_standard part04/chapter_F.rst): F.1.5 (states), F.7.2.1
(N-CREATE; Table F.7.2-1 and its code macros F.7.2-1a to -1f), F.7.2.2 (N-SET; Table F.7.2-2). General
status codes from PS3.7 10.1.3.1.9 (N-SET) and 10.1.5.1.6 (N-CREATE). Tags and keywords are checked
against pydicom's dictionary by tests/test_mpps_domain.py. Not compared with later editions cell by cell.

Standard statuses the text names:
  N-CREATE with Performed Procedure Step Status other than IN PROGRESS -> 0106 Invalid Attribute Value
      with an Attribute List (F.7.2.1.3).
  N-SET on a step that is not IN PROGRESS -> 0110 Processing failure, Error Comment "Performed Procedure
      Step Object may no longer be updated", Error ID A710 (F.7.2.2.3, Table F.7.2-2). A repeat of the
      very N-SET that made the step final gets the same answer: the SCP "shall accept N-SET request
      primitives only if" the status is IN PROGRESS.
Choices where the standard names no status (F.7.2.1.4 and F.7.2.2.4: "no specific status codes"):
  N-SET for an unknown SOP Instance -> 0112 No such SOP Instance (PS3.7's general N-SET status).
  N-CREATE for a SOP Instance UID that exists -> 0111 Duplicate SOP Instance (PS3.7 N-CREATE).
  An attribute the table marks "Not allowed" in N-SET -> 0105 No such attribute, as the UPS SCP here and
      dcm4che's IOD validation answer.
  COMPLETED or DISCONTINUED while Final State requirements are unmet -> 0121 Missing Attribute Value with
      the attributes listed (N-SET has no 0120; the standard makes meeting them the SCU's duty, F.7.2.2.2).
      The Final State column and Note 2 apply to DISCONTINUED exactly as to COMPLETED.
  An empty Performed Procedure Step Status in N-SET, or a Type 1 attribute missing or empty inside a
      replaced sequence item -> 0121; a status value other than the three -> 0106.
Leniencies (notes, not failures): an absent Type 2 attribute is taken as created empty, as the IAN SCP
does (`require_type2=True` makes it 0120 at N-CREATE, 0121 inside an N-SET item); an N-SET of an
attribute not created by the N-CREATE (F.7.2.2.2 and Note 5 forbid it to the SCU) is accepted; a final
step that references no instance is accepted (F.7.2.2.2 allows it "if no such Instances were created",
which the SCP cannot tell).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


from workflow.kernel import statuses
from workflow.kernel.attributes import (AE_TITLE, DATE, NOT_ALLOWED, TIME, UID, Attr, Op, Rejected, any_value,
                                        check, error_comment, find_problems, first_kind, none_of, one_of,
                                        status_conditions, unmet, with_absent_type2_empty)
from workflow.kernel.json_model import first, items, values
from workflow.kernel.state_table import Cell, build_machine, decide
from workflow.kernel.statuses import Status


MPPS_SOP_CLASS_UID = "1.2.840.10008.3.1.2.3.3"  # F.7.3


class MPPSStatus(StrEnum):
    """Performed Procedure Step Status (0040,0252), Table F.1-3."""

    IN_PROGRESS = "IN PROGRESS"
    DISCONTINUED = "DISCONTINUED"
    COMPLETED = "COMPLETED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({MPPSStatus.COMPLETED, MPPSStatus.DISCONTINUED})

# Statuses this module decides that statuses.py does not have (PS3.7 Annex C meanings).
NO_SUCH_SOP_INSTANCE = Status(0x0112, "Failure", "No such SOP Instance")
# Table F.7.2-2: returned with 0110 Processing failure.
NO_LONGER_UPDATABLE_COMMENT = "Performed Procedure Step Object may no longer be updated"
NO_LONGER_UPDATABLE_ERROR_ID = 0xA710

SPECIFIC_CHARACTER_SET = "00080005"
SCHEDULED_STEP_ATTRIBUTES = "00400270"
PPS_STATUS = "00400252"
PERFORMED_SERIES = "00400340"
REFERENCED_IMAGES = "00081140"
REFERENCED_NON_IMAGES = "00400220"
SERIES_INSTANCE_UID = "0020000E"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"

INSTANCE_LIST = "F.7.2.2.2"  # Final State cell "See Service Class User": the instance-list rule


PATIENT_SEX = one_of("M", "F", "O")
PPS_STATUSES = one_of(*MPPSStatus)


# --- Table F.7.2-1 as data --------------------------------------------------------------------------------

def _A(tag: str, keyword: str, n_create: str, n_set: str, final: str = "", **more) -> Attr:
    """A row of Table F.7.2-1: the SCU side of its N-CREATE and N-SET columns (1, 1C, 2, 3 or "not
    allowed"), and its Final State column: "" where the table leaves it blank, which Note 1 defines as
    the N-CREATE requirement; "1", "2", or INSTANCE_LIST for the image and non-image lists."""
    return Attr(tag, keyword, n_create=n_create, n_set=n_set, final=final, **more)


def final_type(rule: Attr) -> str:
    """A row's Final State requirement, Note 1 applied."""
    return rule.final or rule.n_create


_NA = NOT_ALLOWED


def _code_item(meaning: str, settable: bool) -> tuple[Attr, ...]:
    """Tables F.7.2-1a/b (no N-SET), -1c/d (N-SET, Code Meaning 1) and -1e/f (N-SET, Code Meaning 3).
    The N-SET column reads "3/1C" for the code values; a replaced item is taken to need them as at N-CREATE.
    Coding Scheme Version's condition (designator ambiguous) and Long/URN Code Value's (URN or not) are not
    decidable; Equivalent Code Sequence and the mapping and context attributes are accepted unchecked."""
    n_set = "1C" if settable else _NA
    return (
        _A("00080100", "CodeValue", "1C", n_set, condition=none_of("00080119", "00080120")),
        _A("00080102", "CodingSchemeDesignator", "1C", n_set, condition=any_value("00080100", "00080119")),
        _A("00080103", "CodingSchemeVersion", "1C", n_set),
        _A("00080104", "CodeMeaning", meaning, meaning if settable else _NA),
        _A("00080119", "LongCodeValue", "1C", n_set),
        _A("00080120", "URNCodeValue", "1C", n_set),
    )


CODE_NO_SET = _code_item("1", settable=False)  # F.7.2-1a
CODE_SET = _code_item("1", settable=True)  # F.7.2-1c
CODE_SET_OPTIONAL_MEANING = _code_item("3", settable=True)  # F.7.2-1e

# HL7v2 Hierarchic Designator items (Issuer of Accession Number, Order Placer/Filler Identifier, Issuer of
# Admission ID, Issuer of Service Episode ID Sequences).
HIERARCHIC_DESIGNATOR = (
    _A("00400031", "LocalNamespaceEntityID", "1C", _NA, condition=none_of("00400032")),
    _A("00400032", "UniversalEntityID", "1C", _NA, condition=none_of("00400031")),
    _A("00400033", "UniversalEntityIDType", "1C", _NA, condition=any_value("00400032")),
)

SOP_REFERENCE_NO_SET = (
    _A(REFERENCED_SOP_CLASS_UID, "ReferencedSOPClassUID", "1", _NA, check=UID),
    _A(REFERENCED_SOP_INSTANCE_UID, "ReferencedSOPInstanceUID", "1", _NA, check=UID),
)

SOP_REFERENCE = (
    _A(REFERENCED_SOP_CLASS_UID, "ReferencedSOPClassUID", "1", "1", check=UID),
    _A(REFERENCED_SOP_INSTANCE_UID, "ReferencedSOPInstanceUID", "1", "1", check=UID),
)

ISSUER_QUALIFIERS = (
    _A("00400032", "UniversalEntityID", "3", _NA),
    _A("00400033", "UniversalEntityIDType", "1C", _NA, condition=any_value("00400032")),
)

SCHEDULED_STEP_ITEM = (
    _A("0020000D", "StudyInstanceUID", "1", _NA, check=UID),
    _A("00081110", "ReferencedStudySequence", "2", _NA, items=SOP_REFERENCE_NO_SET),
    _A("00080050", "AccessionNumber", "2", _NA),
    _A("00080051", "IssuerOfAccessionNumberSequence", "3", _NA, items=HIERARCHIC_DESIGNATOR),
    _A("00402016", "PlacerOrderNumberImagingServiceRequest", "3", _NA),
    _A("00400026", "OrderPlacerIdentifierSequence", "3", _NA, items=HIERARCHIC_DESIGNATOR),
    _A("00402017", "FillerOrderNumberImagingServiceRequest", "3", _NA),
    _A("00400027", "OrderFillerIdentifierSequence", "3", _NA, items=HIERARCHIC_DESIGNATOR),
    _A("00401001", "RequestedProcedureID", "2", _NA),
    _A("00321064", "RequestedProcedureCodeSequence", "3", _NA, items=CODE_NO_SET),
    _A("00321060", "RequestedProcedureDescription", "2", _NA),
    _A("00400009", "ScheduledProcedureStepID", "2", _NA),
    _A("00400007", "ScheduledProcedureStepDescription", "2", _NA),
    _A("00400008", "ScheduledProtocolCodeSequence", "2", _NA, items=CODE_NO_SET),
)

REFERENCED_IMAGE_ITEM = (
    *SOP_REFERENCE,
    _A("00400512", "ContainerIdentifier", "3", "3"),
    _A("00400560", "SpecimenDescriptionSequence", "3", "3", items=(
        _A("00400551", "SpecimenIdentifier", "1", "1"),
        _A("00400554", "SpecimenUID", "1", "1", check=UID),
    )),
)

PERFORMED_SERIES_ITEM = (
    _A("00081050", "PerformingPhysicianName", "2", "2", "2", multi=True),
    _A("00181030", "ProtocolName", "1", "1", "1"),
    _A("00081070", "OperatorsName", "2", "2", "2", multi=True),
    _A(SERIES_INSTANCE_UID, "SeriesInstanceUID", "1", "1", "1", check=UID),
    _A("0008103E", "SeriesDescription", "2", "2", "2"),
    _A("00080054", "RetrieveAETitle", "2", "2", "2", check=AE_TITLE, multi=True),
    _A("0040A494", "ArchiveRequested", "3", "3"),
    _A(REFERENCED_IMAGES, "ReferencedImageSequence", "2", "2", INSTANCE_LIST, items=REFERENCED_IMAGE_ITEM),
    _A(REFERENCED_NON_IMAGES, "ReferencedNonImageCompositeSOPInstanceSequence", "2", "2", INSTANCE_LIST,
       items=SOP_REFERENCE),
)

# Table F.7.2-1. Columns: tag, keyword, N-CREATE, N-SET, Final State (blank: as N-CREATE, Note 1).
MPPS_ATTRIBUTES: tuple[Attr, ...] = (
    # SOP Common. 1C "if an extended or replacement character set is used": DICOM JSON text is Unicode, so
    # the encoder, not this check, decides the character set.
    _A(SPECIFIC_CHARACTER_SET, "SpecificCharacterSet", "1C", "1C", multi=True),
    # Performed Procedure Step Relationship (fixed at N-CREATE)
    _A(SCHEDULED_STEP_ATTRIBUTES, "ScheduledStepAttributesSequence", "1", _NA, items=SCHEDULED_STEP_ITEM),
    _A("00100010", "PatientName", "2", _NA),
    _A("00100020", "PatientID", "2", _NA),
    _A("00100021", "IssuerOfPatientID", "3", _NA),
    _A("00100024", "IssuerOfPatientIDQualifiersSequence", "3", _NA, items=ISSUER_QUALIFIERS),
    _A("00101002", "OtherPatientIDsSequence", "3", _NA, items=(
        _A("00100020", "PatientID", "3", _NA),
        _A("00100021", "IssuerOfPatientID", "3", _NA),
        _A("00100024", "IssuerOfPatientIDQualifiersSequence", "3", _NA, items=ISSUER_QUALIFIERS),
        _A("00100022", "TypeOfPatientID", "3", _NA),
    )),
    _A("00100030", "PatientBirthDate", "2", _NA, check=DATE),
    _A("00100040", "PatientSex", "2", _NA, check=PATIENT_SEX),
    _A("00081120", "ReferencedPatientSequence", "2", _NA, items=SOP_REFERENCE_NO_SET),
    _A("00380010", "AdmissionID", "3", _NA),
    _A("00380014", "IssuerOfAdmissionIDSequence", "3", _NA, items=HIERARCHIC_DESIGNATOR),
    _A("00380060", "ServiceEpisodeID", "3", _NA),
    _A("00380064", "IssuerOfServiceEpisodeIDSequence", "3", _NA, items=HIERARCHIC_DESIGNATOR),
    _A("00380062", "ServiceEpisodeDescription", "3", _NA),
    # Performed Procedure Step Information
    _A("00400253", "PerformedProcedureStepID", "1", _NA),
    _A("00400241", "PerformedStationAETitle", "1", _NA, check=AE_TITLE),
    _A("00400242", "PerformedStationName", "2", _NA),
    _A("00400243", "PerformedLocation", "2", _NA),
    _A("00400244", "PerformedProcedureStepStartDate", "1", _NA, check=DATE),
    _A("00400245", "PerformedProcedureStepStartTime", "1", _NA, check=TIME),
    _A(PPS_STATUS, "PerformedProcedureStepStatus", "1", "3", check=PPS_STATUSES),
    _A("00400254", "PerformedProcedureStepDescription", "2", "3"),
    _A("00400255", "PerformedProcedureTypeDescription", "2", "3"),
    _A("00081032", "ProcedureCodeSequence", "2", "3", items=CODE_SET_OPTIONAL_MEANING),
    _A("00401012", "ReasonForPerformedProcedureCodeSequence", "3", "3", items=CODE_SET),
    _A("00400250", "PerformedProcedureStepEndDate", "2", "3", "1", check=DATE),
    _A("00400251", "PerformedProcedureStepEndTime", "2", "3", "1", check=TIME),
    _A("00400280", "CommentsOnThePerformedProcedureStep", "3", "3"),
    _A("00400281", "PerformedProcedureStepDiscontinuationReasonCodeSequence", "3", "3", items=CODE_SET),
    # Image Acquisition Results
    _A("00080060", "Modality", "1", _NA),
    _A("00200010", "StudyID", "2", _NA),
    _A("00400260", "PerformedProtocolCodeSequence", "2", "3", items=CODE_SET_OPTIONAL_MEANING),
    # Final "1" with Note 2: at least one item when the step becomes COMPLETED or DISCONTINUED.
    _A(PERFORMED_SERIES, "PerformedSeriesSequence", "2", "3", "1", items=PERFORMED_SERIES_ITEM),
)

BY_TAG: dict[str, Attr] = {attr.tag: attr for attr in MPPS_ATTRIBUTES}

# "All other Attributes of the MPPS IOD" are 3/3: accepted in N-CREATE and N-SET, stored, not checked.
# These are the ones modalities commonly send: the Radiation Dose Module (retired, PS3.3-2017c) and the
# Billing and Material Management Codes Module. Listed for the conformance statement only.
ACCEPTED_UNCHECKED: tuple[str, ...] = (
    "AnatomicStructureSpaceOrRegionSequence", "TotalTimeOfFluoroscopy", "TotalNumberOfExposures",
    "DistanceSourceToDetector", "DistanceSourceToEntrance", "EntranceDose", "EntranceDoseInmGy", "ExposedArea",
    "ImageAndFluoroscopyAreaDoseProduct", "CommentsOnRadiationDose", "ExposureDoseSequence",
    "BillingProcedureStepSequence", "FilmConsumptionSequence", "BillingSuppliesAndDevicesSequence",
)


# --- Rejections and decisions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What the SCP answers and does for one request."""

    status: Status
    new_status: MPPSStatus | None = None  # None: the status does not change
    comment: str = ""  # Error Comment (0000,0902)
    error_id: int | None = None  # Error ID (0000,0903)
    tags: tuple[str, ...] = ()  # Attribute Identifier List (0000,1005)
    notes: tuple[str, ...] = ()  # accepted departures, for the log

    @property
    def accepted(self) -> bool:
        return self.status.category != "Failure"

    @property
    def text(self) -> str:
        """The cell text for the rendered table."""
        if self.status.category != "Success":
            error_id = f" (Error ID {self.error_id:04X})" if self.error_id is not None else ""
            return f"{self.status.category.lower()} {self.status.hex}{error_id}"
        return f"→ {self.new_status}" if self.new_status else "update, status unchanged"


def _status_value(ds: dict[str, Any]) -> Any:
    """The first Performed Procedure Step Status value that is not blank, None when there is none."""
    return first(ds, PPS_STATUS)


def parse_status(value: Any) -> MPPSStatus | None:
    """A Performed Procedure Step Status from a request, or None when it is not one of the three."""
    try:
        return MPPSStatus(str(value or "").strip())
    except ValueError:
        return None


# --- N-CREATE ------------------------------------------------------------------------------------------

def check_create(ds: dict[str, Any], *, type2_absent: str = "accept") -> list[str]:
    """Validate an N-CREATE data set; raise Rejected with the status to answer.

    0106 first when Performed Procedure Step Status has a value other than IN PROGRESS (F.7.2.1.3: "Invalid
    Attribute Value" with an Attribute List). Then the attribute-rule engine: 0105 an attribute "not
    allowed" (none is at N-CREATE), 0120 a Type 1 attribute absent (the status included), 0121 a Type 1
    attribute empty or a Type 1 sequence without items, 0106 a malformed UID, AE title, date, time,
    enumerated value or VM. Absent Type 2 attributes: the site's `type2_absent` (accepted as created
    empty by default). Attributes the table does not list pass unchecked ("all other Attributes" are 3/3).
    Returns the notes, for the log."""
    status = _status_value(ds)
    if status is not None and str(status).strip() != MPPSStatus.IN_PROGRESS:
        raise Rejected(statuses.INVALID_ATTRIBUTE_VALUE,
                       f"PerformedProcedureStepStatus is {str(status)[:16]!r}, not IN PROGRESS",
                       (PPS_STATUS,), "PerformedProcedureStepStatus")
    return check(ds, MPPS_ATTRIBUTES, Op.CREATE, type2_absent=type2_absent)


def stored_create(ds: dict[str, Any]) -> dict[str, Any]:
    """A checked N-CREATE data set as stored: absent Type 2 attributes present and empty."""
    return with_absent_type2_empty(ds, MPPS_ATTRIBUTES)


ATTRIBUTE_STATUSES = status_conditions(MPPS_ATTRIBUTES, (Op.CREATE, Op.SET))


# --- The state machine -----------------------------------------------------------------------------------

class Event(StrEnum):
    """The rows of the state table; the member name is the Machine's trigger."""

    N_CREATE = "N-CREATE (status IN PROGRESS)"
    N_SET = "N-SET without Performed Procedure Step Status, or with IN PROGRESS"
    N_SET_COMPLETED = "N-SET with Performed Procedure Step Status COMPLETED"
    N_SET_DISCONTINUED = "N-SET with Performed Procedure Step Status DISCONTINUED"


NO_INSTANCE = "NO INSTANCE"
COLUMNS: tuple[str, ...] = (NO_INSTANCE, *(status.value for status in MPPSStatus))

SET_EVENTS: dict[MPPSStatus | None, Event] = {
    None: Event.N_SET,
    MPPSStatus.IN_PROGRESS: Event.N_SET,
    MPPSStatus.COMPLETED: Event.N_SET_COMPLETED,
    MPPSStatus.DISCONTINUED: Event.N_SET_DISCONTINUED,
}


def _go(status: MPPSStatus | None) -> Cell:
    return Cell(Decision(statuses.SUCCESS, status))


def _if_met(status: MPPSStatus) -> Cell:
    return Cell(Decision(statuses.SUCCESS, status), "final_requirements_met",
                Decision(statuses.MISSING_ATTRIBUTE_VALUE))


_P, _D, _C = MPPSStatus.IN_PROGRESS, MPPSStatus.DISCONTINUED, MPPSStatus.COMPLETED
_0111 = Cell(Decision(statuses.DUPLICATE_SOP_INSTANCE))
_0112 = Cell(Decision(NO_SUCH_SOP_INSTANCE))
_A710 = Cell(Decision(statuses.PROCESSING_FAILURE, comment=NO_LONGER_UPDATABLE_COMMENT,
                      error_id=NO_LONGER_UPDATABLE_ERROR_ID))

# Tables F.1-3/F.1-4 with F.7.2.1.3 and F.7.2.2.3; columns follow COLUMNS.
STATE_TABLE: dict[Event, tuple[Cell, ...]] = {
    #                          no instance  IN PROGRESS    DISCONTINUED  COMPLETED
    Event.N_CREATE:            (_go(_P),    _0111,         _0111,        _0111),
    Event.N_SET:               (_0112,      _go(None),     _A710,        _A710),
    Event.N_SET_DISCONTINUED:  (_0112,      _if_met(_D),   _A710,        _A710),
    Event.N_SET_COMPLETED:     (_0112,      _if_met(_C),   _A710,        _A710),
}  # fmt: skip


def _dest(decision: Decision) -> str | None:
    return decision.new_status.value if decision.new_status else None


# Built once and never changed.
_MACHINE = build_machine(STATE_TABLE, COLUMNS, FINAL_STATUSES, NO_INSTANCE, _dest)


def _decide(event: Event, current: MPPSStatus | None, final_requirements_met: bool = False) -> Decision:
    return decide(_MACHINE, event, current.value if current else NO_INSTANCE, final_requirements_met)


def decide_create(exists: bool) -> Decision:
    """N-CREATE, after check_create: IN PROGRESS, or 0111 when the SOP Instance UID is taken."""
    return _decide(Event.N_CREATE, MPPSStatus.IN_PROGRESS if exists else None)


# --- N-SET ---------------------------------------------------------------------------------------------

def decide_set(current: MPPSStatus | None, modification: dict[str, Any], *,
               stored: dict[str, Any] | None = None, type2_absent: str = "accept") -> Decision:
    """N-SET (F.7.2.2). In this order:
    no such instance -> 0112; COMPLETED or DISCONTINUED -> 0110 with Error ID A710 (whatever is sent);
    the Modification List against the N-SET column -> 0105 "not allowed", 0121 an emptied status or a
    Type 1 attribute missing or empty in a replaced item, 0106 an invalid value (a status not one of the
    three included); then the status it sets: none or IN PROGRESS -> update; COMPLETED or DISCONTINUED ->
    that status if the Final State requirements hold on merge_set(stored, modification), else 0121 naming
    them. Without `stored` the Final State requirements are not checked: the caller must then call
    final_unmet itself. Notes (accepted): absent Type 2 attributes in replaced items; with `stored`,
    attributes set that the N-CREATE did not create (F.7.2.2.2); a final step referencing no instance."""
    target = parse_status(_status_value(modification))
    if current is None or current.is_final:
        return _decide(SET_EVENTS[target], current)
    notes: list[str] = []
    rejected = first_kind(find_problems(modification, MPPS_ATTRIBUTES, Op.SET, type2_absent=type2_absent,
                                        notes=notes))
    if rejected is not None:
        return Decision(rejected.status, comment=rejected.comment, tags=rejected.tags)
    if stored is not None:
        notes += [f"{BY_TAG[tag].keyword} set but not created by the N-CREATE; accepted"
                  for tag in modification if tag not in stored and tag in BY_TAG and BY_TAG[tag].n_create == "3"]
    event = SET_EVENTS[target]
    if event is Event.N_SET or stored is None:
        return replace(_decide(event, current, final_requirements_met=True), notes=tuple(notes))
    merged = merge_set(stored, modification)
    unmet_rows = _final_unmet(merged)
    decision = _decide(event, current, final_requirements_met=not unmet_rows)
    if unmet_rows:
        more = f" (+{len(unmet_rows) - 1} more)" if len(unmet_rows) > 1 else ""
        return replace(decision, comment=error_comment(f"{unmet_rows[0][1].keyword} missing for {target}{more}"),
                       tags=tuple(dict.fromkeys(rule.tag for _, rule in unmet_rows)))
    if not expected_instances(merged):
        notes.append(f"{target} without image or non-image references (F.7.2.2.2: only if none were created)")
    return replace(decision, notes=tuple(notes))


def merge_set(current: dict[str, Any], modification: dict[str, Any]) -> dict[str, Any]:
    """Apply a checked N-SET: each attribute is replaced whole, a sequence with all its items (F.7.2.2.2:
    "all Items of a Sequence are to be included"). Neither input is changed. Specific Character Set does
    not replace the stored one (F.7.2.2.3): DICOM JSON holds Unicode, so when the two differ the result
    declares ISO_IR 192 (UTF-8), which covers both, as the UPS SCP does."""
    merged = copy.deepcopy(current)
    for tag, new in modification.items():
        if tag != SPECIFIC_CHARACTER_SET:
            merged[tag] = copy.deepcopy(new)
    old_charset = values(current, SPECIFIC_CHARACTER_SET)
    new_charset = values(modification, SPECIFIC_CHARACTER_SET)
    if new_charset and new_charset != old_charset:
        charset = new_charset if not old_charset else ["ISO_IR 192"]
        merged[SPECIFIC_CHARACTER_SET] = {"vr": "CS", "Value": list(charset)}
    return merged


def final_unmet(ds: dict[str, Any], target: MPPSStatus | str) -> list[str]:
    """The Final State requirements of Table F.7.2-1 that `ds` does not meet, nested ones included, as paths
    like "PerformedSeriesSequence[0].ProtocolName (0018,1030)"; empty when it may become `target`.

    Final Type 1 (the column's 1, or the N-CREATE Type 1 by Note 1, 1C where the item decides it) needs a
    value; a Type 1 sequence at least one item (Note 2: Performed Series Sequence). Final Type 2 is met by
    absence, absent Type 2 being taken as empty. The instance-list cells (F.7.2.2.2) are not failures:
    decide_set notes a final step without references. COMPLETED and DISCONTINUED have the same
    requirements (Note 1)."""
    status = MPPSStatus(target)
    if not status.is_final:
        raise ValueError(f"{status} is not a final status")
    return [f"{path} {rule.tag_text}" for path, rule in _final_unmet(ds)]


def _final_unmet(ds: dict[str, Any]) -> list[tuple[str, Attr]]:
    def required(rule: Attr, holder: dict) -> bool:
        need = final_type(rule)
        return need == "1" or (need == "1C" and rule.applies(holder))
    return list(unmet(ds, MPPS_ATTRIBUTES, required))


# --- What the rest of the workflow reads ---------------------------------------------------------------

def _uid(ds: dict[str, Any], tag: str) -> str | None:
    value = first(ds, tag)
    return (value.strip("\x00 ") or None) if isinstance(value, str) else None


def _text(ds: dict[str, Any], tag: str) -> str | None:
    value = first(ds, tag)
    return (value.strip() or None) if isinstance(value, str) else None


def expected_instances(ds: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(series_instance_uid, sop_class_uid, sop_instance_uid) of every instance the step lists in Performed
    Series Sequence > Referenced Image Sequence and > Referenced Non-Image Composite SOP Instance Sequence
    (F.7.2.2.2: the two lists differ "for historic reasons only"), in order, each once. Items without a
    Series Instance UID or without both SOP UIDs are skipped."""
    found: dict[tuple[str, str, str], None] = {}
    for series in items(ds, PERFORMED_SERIES):
        series_uid = _uid(series, SERIES_INSTANCE_UID)
        if series_uid is None:
            continue
        for reference in items(series, REFERENCED_IMAGES) + items(series, REFERENCED_NON_IMAGES):
            sop_class, sop_instance = (_uid(reference, REFERENCED_SOP_CLASS_UID),
                                       _uid(reference, REFERENCED_SOP_INSTANCE_UID))
            if sop_class and sop_instance:
                found[series_uid, sop_class, sop_instance] = None
    return list(found)


def request_keys(ds: dict[str, Any]) -> list[dict[str, str | None]]:
    """Per Scheduled Step Attributes Sequence item, the keys that tie the step to a requested procedure:
    study_instance_uid, accession_number, requested_procedure_id, scheduled_procedure_step_id (None when
    empty: an unscheduled step has only the Study Instance UID, F.7.2.1.2 Note 3)."""
    return [
        {
            "study_instance_uid": _uid(item, "0020000D"),
            "accession_number": _text(item, "00080050"),
            "requested_procedure_id": _text(item, "00401001"),
            "scheduled_procedure_step_id": _text(item, "00400009"),
        }
        for item in items(ds, SCHEDULED_STEP_ATTRIBUTES)
    ]


# --- For the conformance statement ---------------------------------------------------------------------

# Every status an MPPS request gets and when: the conformance statement's table.
STATUS_CONDITIONS = statuses.conditions(
    ((statuses.SUCCESS, "N-CREATE: the step was created IN PROGRESS. N-SET: the Modification List was applied "
                        "(sequences replaced whole) and, when it set COMPLETED or DISCONTINUED, the Final State "
                        "requirements held."),),
    ATTRIBUTE_STATUSES,
    ((statuses.NO_SUCH_ATTRIBUTE, "In N-SET: patient, scheduling, station, start date and time, Modality, Study ID."),
     (statuses.INVALID_ATTRIBUTE_VALUE, "Also: N-CREATE with Performed Procedure Step Status other than IN "
                                        "PROGRESS (F.7.2.1.3; the Attribute Identifier List names it)."),
     (statuses.MISSING_ATTRIBUTE_VALUE, "Also: COMPLETED or DISCONTINUED set while a Final State requirement is "
                                        "unmet (End Date and Time, a Performed Series item with Protocol Name and "
                                        "Series Instance UID)."),
     (statuses.PROCESSING_FAILURE, "N-SET on a COMPLETED or DISCONTINUED step: Error Comment \"Performed "
                                   "Procedure Step Object may no longer be updated\", Error ID A710 (Table "
                                   "F.7.2-2). Also: the data set cannot be decoded, or the database refused it."),
     (statuses.DUPLICATE_SOP_INSTANCE, "N-CREATE for a SOP Instance UID that exists."),
     (NO_SUCH_SOP_INSTANCE, "N-SET for a SOP Instance UID that no N-CREATE created.")),
)


def state_table_markdown() -> str:
    """The state table as this SCP implements it, for the conformance statement."""
    header = ("Event", "no such instance", *MPPSStatus)
    rows = [(event.value, *(cell.text for cell in cells)) for event, cells in STATE_TABLE.items()]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
