"""Every audit message this server writes validates against the DICOM audit message schema (PS3.15
A.5.1) and carries its PS3.15 event ID and type codes; the syslog framing is RFC 5424/5425's."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from lxml import etree

from testkit.audit import schema_errors, valid
from workflow.audit.rules import messages as m
from workflow.audit.sender import syslog_frame
from workflow.kernel.requestor import Requestor

SOURCE = m.Source("WFM-SITE", "HOSPITAL-1", "WFM", "wfm.example.org")
AE = Requestor("SCHEDULER", "10.1.2.3", "dimse")
TOKEN = Requestor("orchestrator", "10.1.2.4", "http")

MESSAGES = {
    "start": m.application_activity(True),
    "stop": m.application_activity(False),
    "association refused": m.security_alert(m.NODE_AUTHENTICATION, AE, "association rejected: calling AE unknown"),
    "rights": m.security_alert(m.RESTRICTED_FUNCTION, TOKEN, "POST /dicom-web/workitems needs the right schedule"),
    "reload": m.security_alert(m.SOFTWARE_CONFIGURATION, None, "policies reloaded", failure=False),
    "query": m.query(AE, "1.2.840.10008.5.1.4.34.6.5", b'{"00741000": {"vr": "CS", "Value": ["SCHEDULED"]}}'),
    "ups create": m.procedure_record(AE, "C", m.UPS_PUSH, "1.2.3.4", "1.2.3", "created SCHEDULED"),
    "mpps final": m.procedure_record(AE, "U", m.MPPS, "1.2.3.5", None, "COMPLETED"),
    "ian": m.imported(AE, m.IAN, "1.2.3.6", "1.2.3", 12),
    "inventory": m.imported(AE, m.INVENTORY, "1.2.3.7", None, 1),
    "report read": m.report_read(TOKEN, "2.25.1"),
    "report export": m.report_read(TOKEN, "2.25.1", "csv"),
    "login": m.user_authentication(TOKEN, True),
    "login failed": m.user_authentication(Requestor("unknown", "10.9.9.9", "http"), False, "unknown token"),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_each_message_validates_against_the_schema(name):
    xml = m.to_xml(MESSAGES[name], SOURCE)
    assert valid(xml), schema_errors(xml)


def test_the_schema_refuses_what_breaks_it():
    xml = m.to_xml(MESSAGES["ian"], SOURCE)
    broken = xml.replace('EventOutcomeIndicator="0"', 'EventOutcomeIndicator="1"')
    assert not valid(broken)
    no_participant = re.sub(r"<ActiveParticipant [^>]*(/>|>.*?</ActiveParticipant>)", "", xml, flags=re.S)
    assert not valid(no_participant)


def test_event_codes_and_participants():
    document = etree.fromstring(m.to_xml(MESSAGES["ups create"], SOURCE).encode())
    ident = document.find("EventIdentification")
    assert ident.get("EventActionCode") == "C" and ident.find("EventID").get("csd-code") == "110111"
    requestor, server = document.findall("ActiveParticipant")
    assert (requestor.get("UserID"), requestor.get("UserIsRequestor")) == ("SCHEDULER", "true")
    assert (server.get("UserID"), server.get("UserIsRequestor")) == ("WFM", "false")
    source = document.find("AuditSourceIdentification")
    assert (source.get("AuditSourceID"), source.get("AuditEnterpriseSiteID")) == ("WFM-SITE", "HOSPITAL-1")
    objects = {o.get("ParticipantObjectID") for o in document.findall("ParticipantObjectIdentification")}
    assert objects == {"1.2.3.4", "1.2.3"}
    alert = etree.fromstring(m.to_xml(MESSAGES["association refused"], SOURCE).encode())
    assert alert.find("EventIdentification/EventTypeCode").get("csd-code") == "110126"
    assert alert.find("EventIdentification").get("EventOutcomeIndicator") == "4"


def test_syslog_frame():
    at = datetime(2026, 12, 5, 10, 0, 0, 123000, tzinfo=timezone.utc)
    frame = syslog_frame(42, "<AuditMessage/>", "wfm.example.org", at)
    assert re.match(rb'^<85>1 2026-12-05T10:00:00\.123Z wfm\.example\.org wfm \d+ IHE\+RFC-3881 '
                    rb'\[wfm@32473 record="42"\] \xef\xbb\xbf<AuditMessage/>$', frame)
