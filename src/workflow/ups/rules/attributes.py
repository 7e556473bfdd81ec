"""The UPS attributes: PS3.4 Table CC.2.5-3 (N-CREATE, N-SET, Final State, matching and return keys) as
data, and the checks the UPS SCP makes on N-CREATE and N-SET data sets and before a Final State.

Works on the DICOM JSON model (PS3.18 F.2), like the IAN rules, so DIMSE and UPS-RS share it.

Source: PS3.4 Annex CC, 2020 text (chsasank/dicom_standard chapter_CC.rst), macros CC.2.5-2a to -2g
included where the table includes them. Tags and keywords are checked against pydicom's dictionary by
tests/test_ups_attributes.py. Not verified: changes made by later editions (CPs); the matching kinds
where the table gives only the key type (inferred from the VR per PS3.4 C.2.2.2); the meanings of the
Input Readiness State values and the Patient's Sex values (from PS3.3 by memory); Type of Instances
values (from the digest).

Requirement codes are the SCU side of the table's "SCU/SCP" columns, plus:
  "-"           the SCP sets the value (SOP Class UID, Modification DateTime); the SCU's is replaced
  "empty"       must be sent without a value (N-CREATE: Transaction UID, the progress and performed
                sequences); absent is accepted too
  "lock"        the Transaction UID at N-SET: ups_state.decide_set checks it
  "not allowed" must not be sent: 0105 No such attribute, as dcm4che answers for IOD "not allowed"
Conditional types (1C, 2C, RC) are enforced only where the data set decides the condition (`condition`);
the others ("if a Human Performer is specified", "if known", ...) are accepted either way.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from workflow.kernel import statuses
from workflow.ian.rules.notification import AE_TITLE, UID, Check, error_comment
from workflow.kernel.statuses import Status
from workflow.kernel.problems import PRECEDENCE, Op as _Op  # noqa: F401  (PRECEDENCE: public)
from workflow.kernel.problems import Problem as _Problem, first_kind, where
from workflow.kernel.problems import problem as _problem
from workflow.ups.rules.state import (CREATE_NOT_SCHEDULED, FINAL_STATES, NO_LONGER_UPDATABLE,
                                       UPS_PUSH_SOP_CLASS_UID, UPSState)


NO_SUCH_ATTRIBUTE = statuses.NO_SUCH_ATTRIBUTE  # PS3.7 10.1.5.1.6, 10.1.3.1.9

TRANSACTION_UID = "00081195"
SPECIFIC_CHARACTER_SET = "00080005"
SOP_CLASS_UID = "00080016"
SOP_INSTANCE_UID = "00080018"
MODIFICATION_DATETIME = "00404010"
WORKLIST_LABEL = "00741202"
PROCEDURE_STEP_STATE = "00741000"
PROGRESS_INFORMATION = "00741002"
PERFORMED_PROCEDURE = "00741216"
CANCELLATION_DATETIME = "00404052"
REASON_FOR_CANCELLATION = "00741238"
DISCONTINUATION_REASON = "0074100E"
VALUE_TYPE = "0040A040"


def _one_of(*values: str) -> Check:
    allowed = frozenset(values)
    return Check("one of " + ", ".join(values), lambda value: value.strip() in allowed)


_DT_RE = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_DA_RE = re.compile(r"^\d{8}$")

PRIORITY = _one_of("HIGH", "MEDIUM", "LOW")
INPUT_READINESS = _one_of("READY", "UNAVAILABLE", "INCOMPLETE")
PATIENT_SEX = _one_of("M", "F", "O")
PROCEDURE_STEP_STATES = _one_of(*UPSState)
TYPE_OF_INSTANCES = _one_of("DICOM", "CDA")
VALUE_TYPES = _one_of("DATETIME", "DATE", "TIME", "PNAME", "UIDREF", "TEXT", "CODE", "NUMERIC")
DATETIME = Check("a DICOM DateTime (YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX])", lambda v: bool(_DT_RE.match(v)))
DATE = Check("a DICOM Date (YYYYMMDD)", lambda v: bool(_DA_RE.match(v)))


# --- DICOM JSON access --------------------------------------------------------------------------------

def _non_empty(value: Any, vr: str | None) -> bool:
    if vr == "SQ":
        return isinstance(value, dict)  # an item, even an empty one
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):  # a PN value: {"Alphabetic": ...}
        return any(isinstance(v, str) and v.strip() for v in value.values())
    return value is not None


def values_of(ds: dict[str, Any], tag: str) -> list[Any]:
    """The non-empty values (or sequence items) of an element; [] when absent or empty."""
    found = ds.get(tag)
    if not found:
        return []
    return [v for v in found.get("Value") or [] if _non_empty(v, found.get("vr"))]


def first_value(ds: dict[str, Any], tag: str) -> Any:
    """The first non-empty value (or item) of an element, None when it has none."""
    return next(iter(values_of(ds, tag)), None)


def has_value(ds: dict[str, Any], tag: str) -> bool:
    return first_value(ds, tag) is not None


def items_of(ds: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return [item for item in values_of(ds, tag) if isinstance(item, dict)]


def json_element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _none_of(*tags: str) -> Callable[[dict], bool]:
    return lambda ds: not any(tag in ds for tag in tags)


def _any_value(*tags: str) -> Callable[[dict], bool]:
    return lambda ds: any(has_value(ds, tag) for tag in tags)


def _value_type_is(value_type: str) -> Callable[[dict], bool]:
    return lambda item: str(first_value(item, VALUE_TYPE) or "").strip() == value_type


# --- Table CC.2.5-3 as data -----------------------------------------------------------------------------

@dataclass(frozen=True)
class UPSAttr:
    """One row of Table CC.2.5-3 (requirement codes: module docstring)."""

    tag: str  # "GGGGEEEE" as in DICOM JSON
    keyword: str
    n_create: str  # SCU at N-CREATE: 1, 1C, 2, 2C, 3, -, empty, not allowed
    n_set: str  # SCU at N-SET: 1, 1C, 2, 3, -, lock, not allowed
    final: str  # Final State code: R, RC, P, X, O; "" in a macro (as its sequence)
    match: str = "-"  # matching key type: R, O, U, * (as the enclosing sequence), - (not a key)
    matching: str = ""  # single, single/range, single+wildcard, uid_list, sequence
    return_key: str = "-"  # return key type: 1, 1C, 2, 2C, 3, -
    items: tuple["UPSAttr", ...] = ()
    check: Check | None = None
    multi: bool = False  # VM 1-n
    condition: Callable[[dict], bool] | None = None  # decides 1C/2C/RC on the data set holding the attribute
    scp_fills: str = ""  # what the SCP puts in when the SCU leaves it out (Worklist Label)
    empty_ok: bool = False  # a Final State "value" may be zero items (Output Information Sequence)
    is_sequence: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_sequence", bool(self.items) or self.keyword.endswith("Sequence"))

    @property
    def tag_text(self) -> str:
        return f"({self.tag[:4]},{self.tag[4:]})"


_A = UPSAttr

# CC.2.5-2a UPS Code Sequence Macro. Coding Scheme Version's condition (designator ambiguous) is not
# decidable here; Long Code Value and URN Code Value are the alternatives to Code Value.
CODE_ITEM = (
    _A("00080100", "CodeValue", "1C", "1C", "", "*", "single", "1C", condition=_none_of("00080119", "00080120")),
    _A("00080102", "CodingSchemeDesignator", "1C", "1C", "", "*", "single", "1C",
       condition=_any_value("00080100", "00080119")),
    _A("00080103", "CodingSchemeVersion", "1C", "1C", "", "-", "", "1C"),
    _A("00080104", "CodeMeaning", "1", "1", "", "-", "", "1"),
    _A("00080119", "LongCodeValue", "1C", "1C", "", "*", "single", "1C"),
    _A("00080120", "URNCodeValue", "1C", "1C", "", "*", "single", "1C"),
)

# CC.2.5-2b UPS Content Item Macro. The 2020 table gives the value attributes N-SET "1/1", which cannot
# hold for all of them at once; taken as 1C like N-CREATE.
CONTENT_ITEM = (
    _A("0040A040", "ValueType", "1", "1", "", "*", "single", "1", check=VALUE_TYPES),
    _A("0040A043", "ConceptNameCodeSequence", "1", "1", "", "*", "sequence", "1", items=CODE_ITEM),
    _A("0040A120", "DateTime", "1C", "1C", "", "*", "single", "1C", check=DATETIME,
       condition=_value_type_is("DATETIME")),
    _A("0040A121", "Date", "1C", "1C", "", "*", "single", "1C", check=DATE, condition=_value_type_is("DATE")),
    _A("0040A122", "Time", "1C", "1C", "", "*", "single", "1C", condition=_value_type_is("TIME")),
    _A("0040A123", "PersonName", "1C", "1C", "", "*", "single", "1C", condition=_value_type_is("PNAME")),
    _A("0040A124", "UID", "1C", "1C", "", "*", "single", "1C", check=UID, condition=_value_type_is("UIDREF")),
    _A("0040A160", "TextValue", "1C", "1C", "", "*", "single", "1C", condition=_value_type_is("TEXT")),
    _A("0040A168", "ConceptCodeSequence", "1C", "1C", "", "*", "sequence", "1C", items=CODE_ITEM,
       condition=_value_type_is("CODE")),
    _A("0040A30A", "NumericValue", "1C", "1C", "", "*", "single", "1C", multi=True,
       condition=_value_type_is("NUMERIC")),
    _A("004008EA", "MeasurementUnitsCodeSequence", "1C", "1C", "", "*", "sequence", "1C", items=CODE_ITEM,
       condition=_value_type_is("NUMERIC")),
)

_RETRIEVALS = ("0040E021", "0040E022", "0040E023", "0040E024", "0040E025")


def _unless_other_retrieval(tag: str) -> Callable[[dict], bool]:
    """Each retrieval sequence is "required if the others are not present": at least one is."""
    return _none_of(*(other for other in _RETRIEVALS if other != tag))


# CC.2.5-2c Referenced Instances and Access Macro (PS3.3 Table 10-3b). Study/Series Instance UID (1C: the
# referenced IOD has a Study/Series IE) and the frame, segment and HL7 references depend on what is
# referenced, which the item does not say: not enforced.
REFERENCED_INSTANCES = (
    _A("0040E020", "TypeOfInstances", "1", "1", "", "O", "single", "1", check=TYPE_OF_INSTANCES),
    _A("0020000D", "StudyInstanceUID", "1C", "1C", "", "O", "uid_list", "1C", check=UID),
    _A("0020000E", "SeriesInstanceUID", "1C", "1C", "", "O", "uid_list", "1C", check=UID),
    _A("00081199", "ReferencedSOPSequence", "1", "1", "", "O", "sequence", "1", items=(
        _A("00081150", "ReferencedSOPClassUID", "1", "1", "", "O", "uid_list", "1", check=UID),
        _A("00081155", "ReferencedSOPInstanceUID", "1", "1", "", "O", "uid_list", "1", check=UID),
        _A("0040E001", "HL7InstanceIdentifier", "1C", "1C", "", "O", "single", "1C"),
        _A("00081160", "ReferencedFrameNumber", "1C", "1C", "", "O", "single", "1C", multi=True),
        _A("0062000B", "ReferencedSegmentNumber", "1C", "1C", "", "O", "single", "1C", multi=True),
    )),
    _A("0040E021", "DICOMRetrievalSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_unless_other_retrieval("0040E021"), items=(
        _A("00080054", "RetrieveAETitle", "1", "1", "", "O", "single", "1", check=AE_TITLE, multi=True),
    )),
    _A("0040E022", "DICOMMediaRetrievalSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_unless_other_retrieval("0040E022"), items=(
        _A("00880130", "StorageMediaFileSetID", "2", "2", "", "O", "single", "2"),
        _A("00880140", "StorageMediaFileSetUID", "1", "1", "", "O", "single", "1", check=UID),
    )),
    _A("0040E023", "WADORetrievalSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_unless_other_retrieval("0040E023"), items=(
        _A("0040E010", "RetrieveURI", "1", "1", "", "O", "single", "1"),
    )),
    _A("0040E024", "XDSRetrievalSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_unless_other_retrieval("0040E024"), items=(
        _A("0040E030", "RepositoryUniqueID", "1", "1", "", "O", "single", "1", check=UID),
        _A("0040E031", "HomeCommunityID", "3", "3", "", "O", "single", "2", check=UID),
    )),
    _A("0040E025", "WADORSRetrievalSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_unless_other_retrieval("0040E025"), items=(
        _A("00081190", "RetrieveURL", "1", "1", "", "O", "single", "1"),
    )),
)

# CC.2.5-2d HL7v2 Hierarchic Designator Macro.
HIERARCHIC_DESIGNATOR = (
    _A("00400031", "LocalNamespaceEntityID", "1C", "not allowed", "", "*", "single", "1C",
       condition=_none_of("00400032")),
    _A("00400032", "UniversalEntityID", "1C", "not allowed", "", "*", "single", "1C", condition=_none_of("00400031")),
    _A("00400033", "UniversalEntityIDType", "1C", "not allowed", "", "*", "single", "1C",
       condition=_any_value("00400032")),
)

# CC.2.5-2e Issuer of Patient ID Macro.
ISSUER_OF_PATIENT_ID = (
    _A("00100021", "IssuerOfPatientID", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    _A("00100024", "IssuerOfPatientIDQualifiersSequence", "2", "not allowed", "O", "O", "sequence", "2", items=(
        _A("00400032", "UniversalEntityID", "2", "not allowed", "O", "O", "single", "2"),
        _A("00400033", "UniversalEntityIDType", "1C", "not allowed", "O", "O", "single", "1C",
           condition=_any_value("00400032")),
        _A("00400035", "IdentifierTypeCode", "2", "not allowed", "O", "O", "single", "2"),
        _A("00400036", "AssigningFacilitySequence", "2", "not allowed", "O", "O", "sequence", "2",
           items=HIERARCHIC_DESIGNATOR),
        _A("00400039", "AssigningJurisdictionCodeSequence", "2", "not allowed", "O", "O", "sequence", "2",
           items=CODE_ITEM),
        _A("0040003A", "AssigningAgencyOrDepartmentCodeSequence", "2", "not allowed", "O", "O", "sequence", "2",
           items=CODE_ITEM),
    )),
)

# CC.2.5-2f SOP Instance Reference Macro.
SOP_INSTANCE_REFERENCE = (
    _A("00081150", "ReferencedSOPClassUID", "1", "1", "", "*", "uid_list", "1", check=UID),
    _A("00081155", "ReferencedSOPInstanceUID", "1", "1", "", "*", "uid_list", "1", check=UID),
)

# CC.2.5-2g Storage Macro. The RST conversion shows Destination AE as (0040,4071), the tag of its
# sequence; pydicom's (2100,0140) is used. Referenced SOP Class UID's condition (the request applies to
# one SOP Class only) is not decidable here.
STORAGE = (
    _A("00081150", "ReferencedSOPClassUID", "1C", "1C", "", "O", "uid_list", "1C", check=UID),
    _A("00404071", "DICOMStorageSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_none_of("00404072", "00404074"), items=(
        _A("21000140", "DestinationAE", "1", "1", "", "*", "single", "1", check=AE_TITLE),
    )),
    _A("00404072", "STOWRSStorageSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_none_of("00404071", "00404074"), items=(
        _A("00404073", "StorageURL", "1", "1", "", "*", "single", "1"),
    )),
    _A("00404074", "XDSStorageSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=_none_of("00404071", "00404072"), items=(
        _A("0040E030", "RepositoryUniqueID", "1", "1", "", "*", "single", "1", check=UID),
        _A("0040E031", "HomeCommunityID", "3", "3", "", "*", "single", "2", check=UID),
    )),
)

REQUEST_ITEM = (
    _A("0020000D", "StudyInstanceUID", "1", "not allowed", "O", "O", "uid_list", "1", check=UID),
    _A("00080050", "AccessionNumber", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    _A("00080051", "IssuerOfAccessionNumberSequence", "2", "not allowed", "O", "R", "sequence", "2",
       items=HIERARCHIC_DESIGNATOR),
    _A("00402016", "PlacerOrderNumberImagingServiceRequest", "3", "not allowed", "O", "O", "single+wildcard", "1C"),
    _A("00400026", "OrderPlacerIdentifierSequence", "2", "not allowed", "O", "O", "sequence", "2",
       items=HIERARCHIC_DESIGNATOR),
    _A("00402017", "FillerOrderNumberImagingServiceRequest", "3", "not allowed", "O", "O", "single+wildcard", "1C"),
    _A("00400027", "OrderFillerIdentifierSequence", "2", "not allowed", "O", "O", "sequence", "2",
       items=HIERARCHIC_DESIGNATOR),
    _A("00401001", "RequestedProcedureID", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    _A("00321060", "RequestedProcedureDescription", "2", "not allowed", "O", "O", "single+wildcard", "2"),
    _A("00321064", "RequestedProcedureCodeSequence", "2", "not allowed", "O", "O", "sequence", "2", items=CODE_ITEM),
    _A("00401002", "ReasonForTheRequestedProcedure", "3", "3", "O", "O", "single+wildcard", "3"),
    _A("0040100A", "ReasonForRequestedProcedureCodeSequence", "3", "3", "O", "O", "sequence", "3", items=CODE_ITEM),
    _A("00401400", "RequestedProcedureComments", "3", "3", "O", "O", "single+wildcard", "1C"),
    _A("00401008", "ConfidentialityCode", "3", "3", "O", "O", "single+wildcard", "3"),
    _A("00401010", "NamesOfIntendedRecipientsOfResults", "3", "3", "O", "O", "single+wildcard", "3", multi=True),
    _A("00402400", "ImagingServiceRequestComments", "3", "3", "O", "O", "single+wildcard", "3"),
    _A("00321032", "RequestingPhysician", "3", "3", "O", "O", "single+wildcard", "3"),
    _A("00321033", "RequestingService", "3", "3", "O", "R", "single+wildcard", "3"),
    _A("00321034", "RequestingServiceCodeSequence", "3", "3", "O", "O", "sequence", "3", items=CODE_ITEM),
    _A("00402004", "IssueDateOfImagingServiceRequest", "3", "3", "O", "O", "single/range", "3", check=DATE),
    _A("00402005", "IssueTimeOfImagingServiceRequest", "3", "3", "O", "O", "single/range", "3"),
    _A("00080090", "ReferringPhysicianName", "3", "3", "O", "O", "single+wildcard", "3"),
)

# Created empty, so nothing inside may be sent with N-CREATE; the performer fills them with N-SET.
PROGRESS_ITEM = (
    _A("00741004", "ProcedureStepProgress", "not allowed", "3", "O"),
    _A("00741006", "ProcedureStepProgressDescription", "not allowed", "3", "O"),
    _A("00741007", "ProcedureStepProgressParametersSequence", "not allowed", "3", "O", items=CONTENT_ITEM),
    _A("00741008", "ProcedureStepCommunicationsURISequence", "not allowed", "3", "O", items=(
        _A("0074100A", "ContactURI", "not allowed", "1", "O"),
        _A("0074100C", "ContactDisplayName", "not allowed", "3", "O"),
    )),
    # "If changing the UPS State to CANCELED and this has no value, the SCP shall fill it with now."
    _A("00404052", "ProcedureStepCancellationDateTime", "not allowed", "3", "X", check=DATETIME),
    _A("00741238", "ReasonForCancellation", "not allowed", "3", "O"),
    _A("0074100E", "ProcedureStepDiscontinuationReasonCodeSequence", "not allowed", "3", "X", items=CODE_ITEM),
)

# Actual Human Performers and its name and code are RC "shall be provided if known": not decidable here.
PERFORMED_ITEM = (
    _A("00404035", "ActualHumanPerformersSequence", "not allowed", "3", "RC", "O", "sequence", "1C", items=(
        _A("00404009", "HumanPerformerCodeSequence", "not allowed", "3", "RC", items=CODE_ITEM),
        _A("00404037", "HumanPerformerName", "not allowed", "3", "RC"),
        _A("00404036", "HumanPerformerOrganization", "not allowed", "3", "O"),
    )),
    _A("00404028", "PerformedStationNameCodeSequence", "not allowed", "3", "P", "O", "sequence", "3", items=CODE_ITEM),
    _A("00404029", "PerformedStationClassCodeSequence", "not allowed", "3", "O", items=CODE_ITEM),
    _A("00404030", "PerformedStationGeographicLocationCodeSequence", "not allowed", "3", "O", items=CODE_ITEM),
    _A("00404050", "PerformedProcedureStepStartDateTime", "not allowed", "3", "P", check=DATETIME),
    _A("00400254", "PerformedProcedureStepDescription", "not allowed", "3", "O"),
    _A("00400280", "CommentsOnThePerformedProcedureStep", "not allowed", "3", "O"),
    _A("00404019", "PerformedWorkitemCodeSequence", "not allowed", "3", "P", items=CODE_ITEM),
    _A("00741212", "PerformedProcessingParametersSequence", "not allowed", "3", "O", items=CONTENT_ITEM),
    _A("00404051", "PerformedProcedureStepEndDateTime", "not allowed", "3", "P", "O", "single/range", "1C",
       check=DATETIME),
    # "If there are no relevant output objects, then this sequence may have no items."
    _A("00404033", "OutputInformationSequence", "not allowed", "2", "P", items=REFERENCED_INSTANCES, empty_ok=True),
)

# Table CC.2.5-3. Columns: tag, keyword, N-CREATE, N-SET, Final State, match key, matching, return key.
UPS_ATTRIBUTES: tuple[UPSAttr, ...] = (
    _A(TRANSACTION_UID, "TransactionUID", "empty", "lock", "O", check=UID),  # never queried nor returned
    # SOP Common Module
    # 1C/RC "if an extended or replacement character set is used": DICOM JSON text is Unicode (UPS-RS
    # sends none), so the encoder, not this check, decides the character set.
    _A(SPECIFIC_CHARACTER_SET, "SpecificCharacterSet", "1C", "1C", "RC", "-", "", "1C", multi=True),
    _A(SOP_CLASS_UID, "SOPClassUID", "-", "not allowed", "R", "O", "uid_list", "1", check=UID),
    _A(SOP_INSTANCE_UID, "SOPInstanceUID", "not allowed", "not allowed", "R", "U", "single", "1", check=UID),
    # Unified Procedure Step Scheduled Procedure Information Module
    _A("00741200", "ScheduledProcedureStepPriority", "1", "3", "R", "R", "single", "1", check=PRIORITY),
    _A(MODIFICATION_DATETIME, "ScheduledProcedureStepModificationDateTime", "-", "-", "R", "O", "single/range", "3",
       check=DATETIME),
    _A("00741204", "ProcedureStepLabel", "1", "3", "O", "R", "single+wildcard", "1"),
    _A(WORKLIST_LABEL, "WorklistLabel", "2", "3", "O", "R", "single+wildcard", "1",
       scp_fills="the default Worklist Label"),
    _A("00741210", "ScheduledProcessingParametersSequence", "2", "3", "O", "-", "", "2", items=CONTENT_ITEM),
    _A("00404025", "ScheduledStationNameCodeSequence", "2", "3", "O", "R", "sequence", "2", items=CODE_ITEM),
    _A("00404026", "ScheduledStationClassCodeSequence", "2", "3", "O", "R", "sequence", "2", items=CODE_ITEM),
    _A("00404027", "ScheduledStationGeographicLocationCodeSequence", "2", "3", "O", "R", "sequence", "2",
       items=CODE_ITEM),
    # 2C "required if a Human Performer is specified": not decidable here.
    _A("00404034", "ScheduledHumanPerformersSequence", "2C", "3", "O", "R", "sequence", "2", items=(
        _A("00404009", "HumanPerformerCodeSequence", "1", "1", "O", "R", "sequence", "1", items=CODE_ITEM),
        _A("00404037", "HumanPerformerName", "1", "1", "O", "O", "single+wildcard", "3"),
        _A("00404036", "HumanPerformerOrganization", "1", "1", "O", "O", "single+wildcard", "3"),
    )),
    _A("00404005", "ScheduledProcedureStepStartDateTime", "1", "3", "R", "R", "single/range", "1", check=DATETIME),
    _A("00404011", "ExpectedCompletionDateTime", "3", "3", "O", "R", "single/range", "3", check=DATETIME),
    _A("00404008", "ScheduledProcedureStepExpirationDateTime", "3", "3", "O", "O", "single/range", "3",
       check=DATETIME),
    _A("00404018", "ScheduledWorkitemCodeSequence", "2", "3", "O", "R", "sequence", "2", items=CODE_ITEM),
    _A("00400400", "CommentsOnTheScheduledProcedureStep", "2", "3", "O", "O", "single+wildcard", "3"),
    _A("00404041", "InputReadinessState", "1", "3", "R", "R", "single", "1", check=INPUT_READINESS),
    _A("00404021", "InputInformationSequence", "2", "3", "O", "O", "sequence", "2", items=REFERENCED_INSTANCES),
    # 1C "required if the workitem is expected to result in composite instances": not decidable here.
    _A("0020000D", "StudyInstanceUID", "1C", "3", "O", "O", "uid_list", "2", check=UID),
    _A("00404070", "OutputDestinationSequence", "3", "3", "O", "O", "sequence", "3", items=STORAGE),
    # Unified Procedure Step Relationship Module (patient and request context: fixed at creation)
    _A("00100010", "PatientName", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    # 1C "required if the subject requires identification ...": not decidable here.
    _A("00100020", "PatientID", "1C", "not allowed", "O", "R", "single+wildcard", "2"),
    *ISSUER_OF_PATIENT_ID,
    _A("00101002", "OtherPatientIDsSequence", "2", "3", "O", "O", "sequence", "2", items=(
        _A("00100020", "PatientID", "1", "1", "O", "O", "single+wildcard", "1"),
        *ISSUER_OF_PATIENT_ID,
        _A("00100022", "TypeOfPatientID", "3", "3", "O", "O", "single", "3"),
    )),
    _A("00100030", "PatientBirthDate", "2", "not allowed", "O", "R", "single/range", "2", check=DATE),
    _A("00100040", "PatientSex", "2", "not allowed", "O", "R", "single", "2", check=PATIENT_SEX),
    _A("00101100", "ReferencedPatientPhotoSequence", "3", "3", "O", "-", "", "3", items=REFERENCED_INSTANCES),
    _A("00380010", "AdmissionID", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    _A("00380014", "IssuerOfAdmissionIDSequence", "2", "not allowed", "O", "R", "sequence", "2",
       items=HIERARCHIC_DESIGNATOR),
    _A("00081080", "AdmittingDiagnosesDescription", "2", "not allowed", "O", "O", "single+wildcard", "2", multi=True),
    _A("00081084", "AdmittingDiagnosesCodeSequence", "2", "not allowed", "O", "O", "sequence", "2", items=CODE_ITEM),
    # "Could be changed while SCHEDULED by canceling and re-creating with the correct values."
    _A("0040A370", "ReferencedRequestSequence", "2", "not allowed", "O", "R", "sequence", "2", items=REQUEST_ITEM),
    # 1C "required if the UPS replaces another Procedure Step": not decidable here.
    _A("00741224", "ReplacedProcedureStepSequence", "1C", "not allowed", "O", "R", "sequence", "3",
       items=SOP_INSTANCE_REFERENCE),
    # Patient Medical Module (the table's only rows there other than "all other attributes 3/3")
    _A("00102000", "MedicalAlerts", "3", "3", "O", "O", "single+wildcard", "2C", multi=True),
    _A("001021C0", "PregnancyStatus", "3", "3", "O", "O", "single", "2C"),
    _A("00380050", "SpecialNeeds", "3", "3", "O", "O", "single+wildcard", "2C"),
    # Unified Procedure Step Progress Information Module
    _A(PROCEDURE_STEP_STATE, "ProcedureStepState", "1", "not allowed", "R", "R", "single", "1",
       check=PROCEDURE_STEP_STATES),
    _A(PROGRESS_INFORMATION, "ProcedureStepProgressInformationSequence", "empty", "3", "X", "-", "", "2",
       items=PROGRESS_ITEM),
    # Unified Procedure Step Performed Procedure Information Module. CC.2.5.1.3.2's note calls its Final
    # State code X, the table P; the table is followed (COMPLETED needs it, CANCELED does not).
    _A(PERFORMED_PROCEDURE, "UnifiedProcedureStepPerformedProcedureSequence", "empty", "3", "P", items=PERFORMED_ITEM),
)

BY_TAG: dict[str, UPSAttr] = {attr.tag: attr for attr in UPS_ATTRIBUTES}


# --- Rejections -----------------------------------------------------------------------------------------

class UPSRejected(Exception):
    """The request breaks a rule: the status to answer, a short comment for the sender, the offending tags
    (for the Attribute Identifier List) and where the first one is."""

    def __init__(self, status: Status, comment: str, tags: tuple[str, ...] = (), path: str = "") -> None:
        super().__init__(comment)
        self.status = status
        self.comment = error_comment(comment)
        self.tags = tags
        self.path = path


def _raise_first(problems: list[_Problem]) -> None:
    found = first_kind(problems)
    if found:
        raise UPSRejected(*found)


def _condition_holds(rule: UPSAttr, ds: dict) -> bool:
    return rule.condition is not None and rule.condition(ds)


def _required(rule: UPSAttr, need: str, ds: dict, op: _Op, require_type2: bool) -> bool:
    """Must the attribute be present? Type 2 only at N-CREATE, and not when the SCP fills it in."""
    if need in ("1", "1C"):
        return need == "1" or _condition_holds(rule, ds)
    if need in ("2", "2C") and op is _Op.CREATE and require_type2 and not rule.scp_fills:
        return need == "2" or _condition_holds(rule, ds)
    return False


def _needs_value(rule: UPSAttr, need: str, ds: dict, op: _Op, top: bool) -> bool:
    """Must it have a value? Type 1, and at N-SET an attribute every UPS has (Type 1 at N-CREATE)."""
    if need == "1" or (need == "1C" and _condition_holds(rule, ds)):
        return True
    return op is _Op.SET and top and rule.n_create == "1"


def _problems(ds: dict, rules: tuple[UPSAttr, ...], op: _Op, require_type2: bool = True,
              path: tuple = ()) -> Iterator[_Problem]:
    for rule in rules:
        need = rule.n_create if op is _Op.CREATE else rule.n_set
        element = ds.get(rule.tag)
        if element is None:
            if _required(rule, need, ds, op, require_type2):
                missing = statuses.MISSING_ATTRIBUTE if op is _Op.CREATE else statuses.MISSING_ATTRIBUTE_VALUE
                yield _problem(missing, rule, path, "missing")
        elif need == "not allowed":
            yield _problem(NO_SUCH_ATTRIBUTE, rule, path, f"not allowed in {op.value}")
        elif need == "empty":
            if values_of(ds, rule.tag):
                yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "must be empty")
        elif need not in ("-", "lock"):  # the SCP sets "-"; ups_state checks the lock
            check = _sequence_problems if rule.is_sequence else _value_problems
            yield from check(ds, rule, need, op, require_type2, path)


def _sequence_problems(ds: dict, rule: UPSAttr, need: str, op: _Op, require_type2: bool,
                       path: tuple) -> Iterator[_Problem]:
    element = ds[rule.tag]
    items = element.get("Value") or []
    if element.get("vr") != "SQ" or not all(isinstance(item, dict) for item in items):
        yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "is not a sequence of items")
        return
    if not items and _needs_value(rule, need, ds, op, not path):
        yield _problem(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "has no items")
    for i, item in enumerate(items):
        yield from _problems(item, rule.items, op, require_type2, path + (rule.keyword, i))


def _value_problems(ds: dict, rule: UPSAttr, need: str, op: _Op, require_type2: bool,
                    path: tuple) -> Iterator[_Problem]:
    raw = ds[rule.tag].get("Value") or []
    present = values_of(ds, rule.tag)
    if not present:
        if _needs_value(rule, need, ds, op, not path):
            yield _problem(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "is empty")
        return
    if len(raw) > 1 and not rule.multi:
        yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "has more than one value")
    if rule.check is not None:
        for value in present:
            if not isinstance(value, str) or not rule.check.ok(value):
                yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, f"invalid: {value!r}")


# --- N-CREATE -------------------------------------------------------------------------------------------

def check_create(ds: dict[str, Any], *, require_type2: bool = True) -> list[str]:
    """Validate an N-CREATE data set; raise UPSRejected with the status the standard names.

    C309 comes first: CC.2.5.3 accepts a creation request only with state SCHEDULED, whatever else it
    holds. Then all rules are checked and the answer is the first kind in PRECEDENCE with all its tags
    (0105 not allowed, 0120 missing, 0121 empty Type 1, 0106 invalid, including a Transaction UID or a
    progress/performed sequence that is not empty: N-CREATE has no service-specific status for those).
    `require_type2=False` accepts absent Type 2 attributes (a site policy; the standard requires them).
    Attributes the table does not list pass unchecked ("all other attributes of the module": 3/3).
    Returns notes on what was left out and is accepted, for the log."""
    state = first_value(ds, PROCEDURE_STEP_STATE)
    if state is not None and str(state).strip() != UPSState.SCHEDULED:
        raise UPSRejected(CREATE_NOT_SCHEDULED, f"ProcedureStepState is {str(state)[:16]!r}, not SCHEDULED",
                          (PROCEDURE_STEP_STATE,), "ProcedureStepState")
    _raise_first(list(_problems(ds, UPS_ATTRIBUTES, _Op.CREATE, require_type2)))
    notes = (_absence_note(rule, require_type2) for rule in UPS_ATTRIBUTES if rule.tag not in ds)
    return [note for note in notes if note]


def _absence_note(rule: UPSAttr, require_type2: bool) -> str:
    if rule.scp_fills:
        return f"{rule.keyword} absent; the SCP fills in {rule.scp_fills}"
    if rule.n_create == "empty":
        return f"{rule.keyword} absent; treated as empty"
    if rule.n_create in ("1C", "2C") and rule.condition is None:
        return f"{rule.keyword} absent (Type {rule.n_create}; its condition is not checked)"
    if rule.n_create == "2" and not require_type2:
        return f"{rule.keyword} absent (Type 2); treated as empty"
    return ""


def apply_create_defaults(ds: dict[str, Any], now_dt: str, default_worklist_label: str, *,
                          sop_instance_uid: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The data set the SCP stores for a checked N-CREATE, and what it changed of what the SCU sent.

    The list holds only changes the SCU can see (the service answers B300 when it is not empty): the
    default Worklist Label (CC.2.5-3: "the SCP shall fill in the Worklist Label"), and a Modification
    DateTime or SOP Class UID the SCU sent that the SCP replaces. Stamping a value the SCU left out, and
    creating the progress and performed sequences empty, are no modification. The Transaction UID is
    dropped: the lock is kept beside the data set, which N-GET may return whole. SOP Class UID is set;
    SOP Instance UID (the Affected SOP Instance UID) when given: both are Final State R, so a caller that
    leaves it out must store it itself or final_state_unmet will list it."""
    out = copy.deepcopy(ds)
    out.pop(TRANSACTION_UID, None)
    changed: list[str] = []
    if not has_value(out, WORKLIST_LABEL) and default_worklist_label:
        out[WORKLIST_LABEL] = json_element("LO", default_worklist_label)
        changed.append(f"WorklistLabel set to {default_worklist_label!r}")
    _replace(out, MODIFICATION_DATETIME, json_element("DT", now_dt), changed)
    _replace(out, SOP_CLASS_UID, json_element("UI", UPS_PUSH_SOP_CLASS_UID), changed)
    if sop_instance_uid:
        out[SOP_INSTANCE_UID] = json_element("UI", sop_instance_uid)
    for tag in (PROGRESS_INFORMATION, PERFORMED_PROCEDURE):
        out.setdefault(tag, {"vr": "SQ", "Value": []})
    return out, changed


def _replace(ds: dict, tag: str, new: dict, changed: list[str]) -> None:
    """Set an SCP-owned value, noting it when it overwrites a different one the SCU sent."""
    sent = first_value(ds, tag)
    if sent is not None and sent != new["Value"][0]:
        changed.append(f"{BY_TAG[tag].keyword} {sent!r} replaced by {new['Value'][0]!r}")
    ds[tag] = new


# --- N-SET ----------------------------------------------------------------------------------------------

def check_set(modification: dict[str, Any], state: UPSState) -> None:
    """Validate an N-SET Modification List (CC.2.6); the Transaction UID is ups_state.decide_set's.

    C300 in a Final State (decide_set says so first; repeated so this check alone never lets a finished
    UPS change). Attributes "not allowed" (patient and request context, Procedure Step State, SOP UIDs)
    -> 0105 No such attribute: CC.2.6 names no status, and dcm4che answers 0105 for them. Emptying an
    attribute every UPS has (Type 1 at N-CREATE), or a replaced item without its Type 1 attributes ->
    0121 (N-SET has no 0120). Invalid values -> 0106. Type 2 attributes inside items are not required."""
    if state in FINAL_STATES:
        raise UPSRejected(NO_LONGER_UPDATABLE, f"the UPS is {state}", ())
    _raise_first(list(_problems(modification, UPS_ATTRIBUTES, _Op.SET)))


def merge_set(current: dict[str, Any], modification: dict[str, Any], now_dt: str) -> dict[str, Any]:
    """Apply a checked N-SET: each attribute, sequences included, is replaced whole (CC.2.6.2), and the
    Modification DateTime stamped with the time of the SET. The Transaction UID is not stored. Specific
    Character Set becomes one that covers old and new text: DICOM JSON holds Unicode, so when the two
    differ the merge declares ISO_IR 192 (UTF-8) rather than either (CC.2.6.3)."""
    merged = copy.deepcopy(current)
    for tag, new in modification.items():
        if tag not in (TRANSACTION_UID, MODIFICATION_DATETIME, SPECIFIC_CHARACTER_SET):
            merged[tag] = copy.deepcopy(new)
    charset = _merged_charset(values_of(current, SPECIFIC_CHARACTER_SET),
                              values_of(modification, SPECIFIC_CHARACTER_SET))
    if charset:
        merged[SPECIFIC_CHARACTER_SET] = json_element("CS", *charset)
    merged[MODIFICATION_DATETIME] = json_element("DT", now_dt)
    return merged


def _merged_charset(old: list[str], new: list[str]) -> list[str]:
    if not new or new == old:
        return old
    return new if not old else ["ISO_IR 192"]


# --- States ---------------------------------------------------------------------------------------------

def with_state(ds: dict[str, Any], state: UPSState) -> dict[str, Any]:
    """The data set with its Procedure Step State set, for storing after a state change."""
    out = copy.deepcopy(ds)
    out[PROCEDURE_STEP_STATE] = json_element("CS", state.value)
    return out


def with_cancellation(ds: dict[str, Any], now_dt: str, *, reason: str | None = None,
                      reason_codes: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """The data set made ready for CANCELED by the SCP: a progress item with the Cancellation DateTime
    (the SCP fills it with now when empty, Table CC.2.5-3), and the Request UPS Cancel's reason and
    proposed Discontinuation Reason Code items when the UPS has none yet. A Discontinuation Reason Code
    must still come from somewhere for the X requirement: the caller's policy (final_state_unmet tells)."""
    out = copy.deepcopy(ds)
    sequence = out.setdefault(PROGRESS_INFORMATION, {"vr": "SQ"})
    if not sequence.get("Value"):
        sequence["Value"] = [{}]
    item = sequence["Value"][0]
    if not has_value(item, CANCELLATION_DATETIME):
        item[CANCELLATION_DATETIME] = json_element("DT", now_dt)
    if reason and not has_value(item, REASON_FOR_CANCELLATION):
        item[REASON_FOR_CANCELLATION] = json_element("LT", reason)
    if reason_codes and not has_value(item, DISCONTINUATION_REASON):
        item[DISCONTINUATION_REASON] = {"vr": "SQ", "Value": [copy.deepcopy(code) for code in reason_codes]}
    return out


_FINAL_CODES = {UPSState.COMPLETED: frozenset({"R", "RC", "P"}), UPSState.CANCELED: frozenset({"R", "RC", "X"})}


def final_state_unmet(ds: dict[str, Any], target: UPSState | str) -> list[str]:
    """The Final State requirements (Table CC.2.5-1 codes) the UPS does not meet for `target`, nested
    ones included, as paths like "Seq[0].Keyword (gggg,eeee)"; empty when it may go to `target`.
    R: both states; P: COMPLETED only; X: CANCELED only; RC: R when its condition decidably holds."""
    state = UPSState(target)
    if state not in _FINAL_CODES:
        raise ValueError(f"{state} is not a Final State")
    return list(_unmet(ds, UPS_ATTRIBUTES, _FINAL_CODES[state], ()))


def _unmet(ds: dict, rules: tuple[UPSAttr, ...], codes: frozenset[str], path: tuple) -> Iterator[str]:
    for rule in rules:
        applies = rule.final in codes and (rule.final != "RC" or _condition_holds(rule, ds))
        met = rule.tag in ds if rule.empty_ok else has_value(ds, rule.tag)
        if applies and not met:
            yield f"{where(path, rule.keyword)} {rule.tag_text}"
            continue
        for i, item in enumerate(items_of(ds, rule.tag) if rule.items else ()):
            yield from _unmet(item, rule.items, codes, path + (rule.keyword, i))
