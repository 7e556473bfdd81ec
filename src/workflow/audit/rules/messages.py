"""DICOM Audit Messages (PS3.15 A.5, the IHE ATNA content) as pure data and their XML: what this server
records, with its PS3.15 event IDs and codes. The XML follows the schema of PS3.15 A.5.1 (element order:
EventIdentification, ActiveParticipant+, AuditSourceIdentification, ParticipantObjectIdentification*).

Events (the mapping is ours where PS3.15 names none for the thing: see EVENTS):
  Application Activity 110100 (110120 start, 110121 stop)          the server starting and stopping
  Security Alert 110113 (110126, 110131, 110132, 110136)            refusals, TLS failures, reloads, rights
  Query 110112                                                      UPS C-FIND and UPS-RS Search, Inventory FIND
  Procedure Record 110111                                           UPS create/update/state/cancel; MPPS
  Import 110107                                                     an IAN or an Inventory instance received
  DICOM Instances Accessed 110103 / Export 110106                   reconciliation reports read / downloaded
  User Authentication 110114 (110122 login)                         HTTP token use, and failures
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

from workflow.kernel.requestor import Requestor


@dataclass(frozen=True)
class Code:
    code: str
    system: str
    meaning: str


def dcm(code: str, meaning: str) -> Code:
    return Code(code, "DCM", meaning)


APPLICATION_ACTIVITY = dcm("110100", "Application Activity")
INSTANCES_ACCESSED = dcm("110103", "DICOM Instances Accessed")
EXPORT = dcm("110106", "Export")
IMPORT = dcm("110107", "Import")
PROCEDURE_RECORD = dcm("110111", "Procedure Record")
QUERY = dcm("110112", "Query")
SECURITY_ALERT = dcm("110113", "Security Alert")
USER_AUTHENTICATION = dcm("110114", "User Authentication")

APPLICATION_START = dcm("110120", "Application Start")
APPLICATION_STOP = dcm("110121", "Application Stop")
LOGIN = dcm("110122", "Login")
NODE_AUTHENTICATION = dcm("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = dcm("110131", "Software Configuration")
RESTRICTED_FUNCTION = dcm("110132", "Use of Restricted Function")
SECURITY_ROLES_CHANGED = dcm("110136", "Security Roles Changed")

APPLICATION = dcm("110150", "Application")
DESTINATION = dcm("110152", "Destination Role ID")
SOURCE = dcm("110153", "Source Role ID")

STUDY_UID = dcm("110180", "Study Instance UID")
SOP_CLASS_UID = dcm("110181", "SOP Class UID")
NODE_ID = dcm("110182", "Node ID")
REPORT_NUMBER = Code("9", "RFC-3881", "Report Number")

UPS_PUSH = "1.2.840.10008.5.1.4.34.6.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
IAN = "1.2.840.10008.5.1.4.33"
INVENTORY = "1.2.840.10008.5.1.4.1.1.201.1"

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"

# What each event means here, for the conformance statement: (event, type, when).
EVENTS: tuple[tuple[Code, Code | None, str], ...] = (
    (APPLICATION_ACTIVITY, APPLICATION_START, "`wfm serve` started"),
    (APPLICATION_ACTIVITY, APPLICATION_STOP, "`wfm serve` stopping"),
    (SECURITY_ALERT, NODE_AUTHENTICATION, "an association refused (calling AE, host or certificate not allowed), "
                                          "a TLS handshake failed, an HTTP token refused (401)"),
    (SECURITY_ALERT, RESTRICTED_FUNCTION, "a request outside the calling AE's or token's rights (0124, 403)"),
    (SECURITY_ALERT, SOFTWARE_CONFIGURATION, "policies reloaded (SIGHUP), or a reload refused"),
    (SECURITY_ALERT, SECURITY_ROLES_CHANGED, "an API token created or revoked"),
    (QUERY, None, "a UPS C-FIND or UPS-RS Search, an Inventory FIND (the query itself is recorded, base64)"),
    (PROCEDURE_RECORD, None, "a UPS workitem created (C), updated, changed state or canceled (U); an MPPS "
                             "created (C) or set COMPLETED/DISCONTINUED (U)"),
    (IMPORT, None, "an IAN received and stored (C), over DIMSE or HTTP; an Inventory instance received (C)"),
    (INSTANCES_ACCESSED, None, "a reconciliation report verified or shown (R)"),
    (EXPORT, None, "a reconciliation report downloaded as JSON, CSV or HTML (R)"),
    (USER_AUTHENTICATION, LOGIN, "an HTTP request with a valid token (at most once per token every 10 "
                                 "minutes per server process), and every refused token (4)"),
)


@dataclass(frozen=True)
class ParticipantObject:
    id: str
    id_type: Code
    type_code: str = "2"  # System object
    role: str | None = None  # e.g. "3" Report, "24" Query, "1" Patient
    name: str | None = None
    query: bytes | None = None  # ParticipantObjectQuery (base64 in the XML)
    sop_class: str | None = None  # ParticipantObjectDescription/SOPClass
    instances: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()  # ParticipantObjectContainsStudy


@dataclass(frozen=True)
class AuditMessage:
    event: Code
    action: str  # C, R, U, D, E
    outcome: str = SUCCESS
    outcome_text: str | None = None
    event_type: Code | None = None
    requestor: Requestor | None = None  # who asked (None: the server acting for itself)
    requestor_role: Code | None = None
    server_role: Code | None = None
    objects: tuple[ParticipantObject, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def name(self) -> str:
        return self.event_type.meaning if self.event_type else self.event.meaning


@dataclass(frozen=True)
class Source:
    """This server as the messages name it."""

    audit_source_id: str
    enterprise_site_id: str
    ae_title: str
    hostname: str


def to_xml(message: AuditMessage, source: Source) -> str:
    root = ET.Element("AuditMessage")
    ident = ET.SubElement(root, "EventIdentification", EventActionCode=message.action,
                          EventDateTime=message.at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
                          EventOutcomeIndicator=message.outcome)
    _code(ident, "EventID", message.event)
    if message.event_type:
        _code(ident, "EventTypeCode", message.event_type)
    if message.outcome_text:
        ET.SubElement(ident, "EventOutcomeDescription").text = message.outcome_text
    if message.requestor is not None:
        who = message.requestor
        user = _participant(root, who.name, True, who.address, message.requestor_role)
        if who.face == "http":
            user.set("AlternativeUserID", "token")
    server = _participant(root, source.ae_title, message.requestor is None, source.hostname, message.server_role)
    server.set("AlternativeUserID", str(os.getpid()))
    src = ET.SubElement(root, "AuditSourceIdentification", AuditSourceID=source.audit_source_id)
    if source.enterprise_site_id:
        src.set("AuditEnterpriseSiteID", source.enterprise_site_id)
    ET.SubElement(src, "AuditSourceTypeCode", {"csd-code": "4"})  # application server process
    for obj in message.objects:
        _object(root, obj)
    return ET.tostring(root, encoding="unicode")


def _code(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code.code, "codeSystemName": code.system,
                                       "originalText": code.meaning})


def _participant(root: ET.Element, user_id: str, requestor: bool, address: str, role: Code | None) -> ET.Element:
    attributes = {"UserID": user_id, "UserIsRequestor": "true" if requestor else "false"}
    if address:
        ip = address.replace(".", "").replace(":", "").isalnum() and any(c.isdigit() for c in address)
        attributes.update(NetworkAccessPointID=address, NetworkAccessPointTypeCode="2" if ip else "1")
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    if role:
        _code(element, "RoleIDCode", role)
    return element


def _object(root: ET.Element, obj: ParticipantObject) -> None:
    attributes = {"ParticipantObjectID": obj.id, "ParticipantObjectTypeCode": obj.type_code}
    if obj.role:
        attributes["ParticipantObjectTypeCodeRole"] = obj.role
    element = ET.SubElement(root, "ParticipantObjectIdentification", attributes)
    _code(element, "ParticipantObjectIDTypeCode", obj.id_type)
    # The schema wants exactly one of a name and a query.
    if obj.query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(obj.query).decode("ascii")
    else:
        ET.SubElement(element, "ParticipantObjectName").text = obj.name or obj.id
    if obj.sop_class or obj.studies:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        if obj.sop_class:
            sop = ET.SubElement(description, "SOPClass", UID=obj.sop_class, NumberOfInstances=str(len(obj.instances)))
            for uid in obj.instances:
                ET.SubElement(sop, "Instance", UID=uid)
        if obj.studies:
            contains = ET.SubElement(description, "ParticipantObjectContainsStudy")
            for uid in obj.studies:
                ET.SubElement(contains, "StudyIDs", UID=uid)


# --- the events ------------------------------------------------------------------------------------------

def application_activity(started: bool) -> AuditMessage:
    return AuditMessage(APPLICATION_ACTIVITY, "E", event_type=APPLICATION_START if started else APPLICATION_STOP,
                        server_role=APPLICATION)


def security_alert(kind: Code, requestor: Requestor | None, detail: str, failure: bool = True) -> AuditMessage:
    """A Security Alert; `detail` says what happened (the EventOutcomeDescription)."""
    objects = (ParticipantObject(requestor.address or requestor.name, NODE_ID, role="13",
                                 name=requestor.name),) if requestor else ()
    return AuditMessage(SECURITY_ALERT, "E", MINOR_FAILURE if failure else SUCCESS, detail[:1000], kind,
                        requestor, objects=objects)


def query(requestor: Requestor, sop_class: str, identifier: bytes) -> AuditMessage:
    return AuditMessage(QUERY, "E", requestor=requestor, requestor_role=SOURCE, server_role=DESTINATION,
                        objects=(ParticipantObject(sop_class, SOP_CLASS_UID, role="24", query=identifier),))


def procedure_record(requestor: Requestor, action: str, sop_class: str, uid: str, study_uid: str | None,
                     what: str, outcome: str = SUCCESS) -> AuditMessage:
    """A UPS workitem or an MPPS created (C) or changed (U); `what` says how (e.g. "IN PROGRESS")."""
    objects = [ParticipantObject(uid, SOP_CLASS_UID, role="3", name=what[:64], sop_class=sop_class,
                                 instances=(uid,))]
    if study_uid:
        objects.append(ParticipantObject(study_uid, STUDY_UID, role="3"))
    return AuditMessage(PROCEDURE_RECORD, action, outcome, requestor=requestor, objects=tuple(objects))


def imported(requestor: Requestor, sop_class: str, uid: str, study_uid: str | None, instances: int) -> AuditMessage:
    """An IAN (or an Inventory instance) received and stored."""
    objects = [ParticipantObject(uid, SOP_CLASS_UID, role="3", sop_class=sop_class, instances=(uid,),
                                 name=f"{instances} instances announced" if sop_class == IAN else None)]
    if study_uid:
        objects.append(ParticipantObject(study_uid, STUDY_UID, role="3", studies=(study_uid,)))
    return AuditMessage(IMPORT, "C", requestor=requestor, requestor_role=SOURCE, server_role=DESTINATION,
                        objects=tuple(objects))


def report_read(requestor: Requestor, run_uid: str, exported: str | None = None) -> AuditMessage:
    """A reconciliation report shown or verified (Accessed), or downloaded in a format (Export)."""
    obj = ParticipantObject(f"reconciliation:{run_uid}", REPORT_NUMBER, role="3",
                            name=f"reconciliation report ({exported})" if exported else "reconciliation report")
    return AuditMessage(EXPORT if exported else INSTANCES_ACCESSED, "R", requestor=requestor,
                        requestor_role=DESTINATION if exported else None, objects=(obj,))


def user_authentication(requestor: Requestor, success: bool, detail: str | None = None) -> AuditMessage:
    return AuditMessage(USER_AUTHENTICATION, "E", SUCCESS if success else MINOR_FAILURE, detail, LOGIN, requestor)
