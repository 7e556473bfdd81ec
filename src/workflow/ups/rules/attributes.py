"""The UPS attributes: PS3.4 Table CC.2.5-3 (N-CREATE, N-SET, Final State, matching and return keys) as
data, and the checks the UPS SCP makes on N-CREATE and N-SET data sets and before a Final State.

Works on the DICOM JSON model (PS3.18 F.2), like the IAN rules, so DIMSE and UPS-RS share it.

Source: PS3.4 Annex CC, 2020 text (chsasank/dicom_standard chapter_CC.rst), macros CC.2.5-2a to -2g
included where the table includes them. Tags and keywords are checked against pydicom's dictionary by
tests/ups/test_ups_attributes.py. Not verified: changes made by later editions (CPs); the matching kinds
where the table gives only the key type (inferred from the VR per PS3.4 C.2.2.2); the meanings of the
Input Readiness State values and the Patient's Sex values (from PS3.3 by memory); Type of Instances
values (from the digest).

Requirement codes are the SCU side of the table's "SCU/SCP" columns, as kernel/attributes.py reads
them ("-": the SCP sets it, e.g. SOP Class UID; "empty": the Transaction UID and the progress and
performed sequences at N-CREATE; "lock": the Transaction UID at N-SET, which ups/rules/state.py checks;
"not allowed": 0105, as dcm4che answers for IOD "not allowed"). Conditional types (1C, 2C, RC) are
enforced only where the data set decides the condition; the others ("if a Human Performer is specified",
"if known", ...) are accepted either way.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from workflow.kernel.attributes import (AE_TITLE, DATE, DATETIME, UID, Attr, Op, Rejected, any_value, check,
                                        none_of, one_of, status_conditions, unmet, with_absent_type2_empty)
from workflow.kernel.json_model import first, json_element, values
from workflow.ups.rules.state import (CREATE_NOT_SCHEDULED, FINAL_STATES, NO_LONGER_UPDATABLE,
                                      UPS_PUSH_SOP_CLASS_UID, UPSState)

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


PRIORITY = one_of("HIGH", "MEDIUM", "LOW")
INPUT_READINESS = one_of("READY", "UNAVAILABLE", "INCOMPLETE")
PATIENT_SEX = one_of("M", "F", "O")
PROCEDURE_STEP_STATES = one_of(*UPSState)
TYPE_OF_INSTANCES = one_of("DICOM", "CDA")
VALUE_TYPES = one_of("DATETIME", "DATE", "TIME", "PNAME", "UIDREF", "TEXT", "CODE", "NUMERIC")


def _value_type_is(value_type: str) -> Callable[[dict], bool]:
    return lambda item: str(first(item, VALUE_TYPE) or "").strip() == value_type


# --- Table CC.2.5-3 as data -----------------------------------------------------------------------------

def _A(tag: str, keyword: str, n_create: str, n_set: str, final: str, match: str = "-", matching: str = "",
       return_key: str = "-", **more) -> Attr:
    """A row of Table CC.2.5-3, in the table's column order (requirement codes: module docstring)."""
    return Attr(tag, keyword, n_create=n_create, n_set=n_set, final=final, match=match, matching=matching,
                return_key=return_key, **more)


# CC.2.5-2a UPS Code Sequence Macro. Coding Scheme Version's condition (designator ambiguous) is not
# decidable here; Long Code Value and URN Code Value are the alternatives to Code Value.
CODE_ITEM = (
    _A("00080100", "CodeValue", "1C", "1C", "", "*", "single", "1C", condition=none_of("00080119", "00080120")),
    _A("00080102", "CodingSchemeDesignator", "1C", "1C", "", "*", "single", "1C",
       condition=any_value("00080100", "00080119")),
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
    return none_of(*(other for other in _RETRIEVALS if other != tag))


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
       condition=none_of("00400032")),
    _A("00400032", "UniversalEntityID", "1C", "not allowed", "", "*", "single", "1C", condition=none_of("00400031")),
    _A("00400033", "UniversalEntityIDType", "1C", "not allowed", "", "*", "single", "1C",
       condition=any_value("00400032")),
)

# CC.2.5-2e Issuer of Patient ID Macro.
ISSUER_OF_PATIENT_ID = (
    _A("00100021", "IssuerOfPatientID", "2", "not allowed", "O", "R", "single+wildcard", "2"),
    _A("00100024", "IssuerOfPatientIDQualifiersSequence", "2", "not allowed", "O", "O", "sequence", "2", items=(
        _A("00400032", "UniversalEntityID", "2", "not allowed", "O", "O", "single", "2"),
        _A("00400033", "UniversalEntityIDType", "1C", "not allowed", "O", "O", "single", "1C",
           condition=any_value("00400032")),
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
       condition=none_of("00404072", "00404074"), items=(
        _A("21000140", "DestinationAE", "1", "1", "", "*", "single", "1", check=AE_TITLE),
    )),
    _A("00404072", "STOWRSStorageSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=none_of("00404071", "00404074"), items=(
        _A("00404073", "StorageURL", "1", "1", "", "*", "single", "1"),
    )),
    _A("00404074", "XDSStorageSequence", "1C", "1C", "", "O", "sequence", "1C",
       condition=none_of("00404071", "00404072"), items=(
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
UPS_ATTRIBUTES: tuple[Attr, ...] = (
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

BY_TAG: dict[str, Attr] = {attr.tag: attr for attr in UPS_ATTRIBUTES}


# --- N-CREATE -------------------------------------------------------------------------------------------

ATTRIBUTE_STATUSES = status_conditions(UPS_ATTRIBUTES, (Op.CREATE, Op.SET))


def check_create(ds: dict[str, Any], *, type2_absent: str = "accept") -> list[str]:
    """Validate an N-CREATE data set; raise Rejected with the status the standard names.

    C309 comes first: CC.2.5.3 accepts a creation request only with state SCHEDULED, whatever else it
    holds. Then the attribute-rule engine (0105 not allowed, 0120 missing, 0121 empty Type 1, 0106 invalid,
    including a Transaction UID or a progress/performed sequence that is not empty: N-CREATE has no
    service-specific status for those). Absent Type 2 attributes: the site's `type2_absent`. Attributes the
    table does not list pass unchecked ("all other attributes of the module": 3/3). Returns notes on what
    was left out and is accepted, for the log."""
    state = first(ds, PROCEDURE_STEP_STATE)
    if state is not None and str(state).strip() != UPSState.SCHEDULED:
        raise Rejected(CREATE_NOT_SCHEDULED, f"ProcedureStepState is {str(state)[:16]!r}, not SCHEDULED",
                       (PROCEDURE_STEP_STATE,), "ProcedureStepState")
    return check(ds, UPS_ATTRIBUTES, Op.CREATE, type2_absent=type2_absent)


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
    out = with_absent_type2_empty(ds, UPS_ATTRIBUTES)
    out.pop(TRANSACTION_UID, None)
    changed: list[str] = []
    if first(out, WORKLIST_LABEL) is None and default_worklist_label:
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
    sent = first(ds, tag)
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
        raise Rejected(NO_LONGER_UPDATABLE, f"the UPS is {state}", ())
    check(modification, UPS_ATTRIBUTES, Op.SET)


def merge_set(current: dict[str, Any], modification: dict[str, Any], now_dt: str) -> dict[str, Any]:
    """Apply a checked N-SET: each attribute, sequences included, is replaced whole (CC.2.6.2), and the
    Modification DateTime stamped with the time of the SET. The Transaction UID is not stored. Specific
    Character Set becomes one that covers old and new text: DICOM JSON holds Unicode, so when the two
    differ the merge declares ISO_IR 192 (UTF-8) rather than either (CC.2.6.3)."""
    merged = copy.deepcopy(current)
    for tag, new in modification.items():
        if tag not in (TRANSACTION_UID, MODIFICATION_DATETIME, SPECIFIC_CHARACTER_SET):
            merged[tag] = copy.deepcopy(new)
    charset = _merged_charset(values(current, SPECIFIC_CHARACTER_SET),
                              values(modification, SPECIFIC_CHARACTER_SET))
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
    """The data set with its Procedure Step State set, for storing after a state change (a new
    top-level dict: `ds` is left as it was, and shares the untouched elements)."""
    out = dict(ds)
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
    if not first(item, CANCELLATION_DATETIME) is not None:
        item[CANCELLATION_DATETIME] = json_element("DT", now_dt)
    if reason and not first(item, REASON_FOR_CANCELLATION) is not None:
        item[REASON_FOR_CANCELLATION] = json_element("LT", reason)
    if reason_codes and not first(item, DISCONTINUATION_REASON) is not None:
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
    codes = _FINAL_CODES[state]

    def required(rule: Attr, holder: dict) -> bool:
        return rule.final in codes and (rule.final != "RC" or rule.applies(holder))

    return [f"{path} {rule.tag_text}" for path, rule in unmet(ds, UPS_ATTRIBUTES, required)]
