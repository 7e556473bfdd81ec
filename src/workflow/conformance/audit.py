"""The audit trail's part of the security section, rendered from the audit room's table of events."""

from __future__ import annotations

from workflow.audit.rules.messages import EVENTS
from workflow.conformance.markdown import table


def render_audit() -> str:
    rows = [(f"{event.meaning} ({event.code})", f"{kind.meaning} ({kind.code})" if kind else "-", when)
            for event, kind, when in EVENTS]
    return f"""### 6.4 Audit trail (IHE ATNA, PS3.15 A.5)

With `audit_repository` set (`tls://host:6514` per RFC 5425, `tcp://host:port` with the same framing, or
`udp://host:514` per RFC 5426), every event below becomes one DICOM Audit Message (PS3.15 A.5.1 schema) in
one RFC 5424 syslog message (facility 10, severity notice, MSGID `IHE+RFC-3881`, the record's number in
the structured data `[wfm@32473 record="N"]`). `audit_source_id` (default: the AE title) and
`audit_enterprise_site_id` are its AuditSourceID and AuditEnterpriseSiteID; the calling AE title (or the
HTTP token's name) and its address are the requesting active participant, this server the other; the
UIDs concerned (workitem, study, SOP class queried, report) are the participant objects.

**Nothing is lost when the repository is down.** Each record is written in the database transaction of the
change it describes (or in its own, for an access or a refusal) and a sender delivers them in record
order, retrying with the event sender's backoff (`event_retry_initial`, `event_retry_max_interval`).
TCP and TLS carry no acknowledgement: after a connection breaks, the records written on it in the last
10 seconds are sent again, so the repository gets every record in order, possibly twice (the record
number tells a repeat). `wfm audit --pending` lists what is owed. A tls:// repository is verified against
`audit_ca_certificates` (or the system's CAs); TLS 1.2 or newer.

{table(("Event ID", "Event type", "When"), rows)}"""
