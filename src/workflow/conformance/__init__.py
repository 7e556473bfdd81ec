"""The DICOM Conformance Statement (PS3.2 structure), generated from the code's own tables:
the services the AE offers, its transfer syntaxes and association settings, the IAN attribute rules,
the availability behaviour and every status with its condition. `wfm conformance` prints it; a test
fails when conformance/CONFORMANCE.md differs from what this renders."""

from __future__ import annotations

from pydicom.uid import UID

from workflow import __version__
from workflow.config import Settings
from workflow.ian.ingest import STATUS_CONDITIONS
from workflow.conformance.ups import render_mpps, render_ups
from workflow.app import OFFERED as SERVICES, USED as SCU_SERVICES
from workflow.dimse.server import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, TRANSFER_SYNTAXES
from workflow.kernel import statuses
from workflow.ups.dimse.event_sender import KEEP_OPEN
from workflow.ian.rules.availability import BEHAVIOUR, Availability
from workflow.ian.rules.notification import IAN_ATTRIBUTES
from workflow.kernel.attributes import Attr, absence_rules
from workflow.conformance.audit import render_audit
from workflow.conformance.console import render_console
from workflow.conformance.dicomweb import render_dicomweb
from workflow.conformance.inventory import render_inventory
from workflow.conformance.security import render_security
from workflow.inventory.job import RECORD_LIMIT
from workflow.conformance.markdown import table as _table

TYPE_MEANING = {
    "1": "required, with a value",
    "2": "required, may be empty",
    "3": "optional",
}


def _attribute_rows(attrs: tuple[Attr, ...], depth: int = 0) -> list[tuple[str, ...]]:
    rows = []
    for attr in attrs:
        name = ">" * depth + attr.keyword
        if attr.is_sequence:
            check = "a sequence" + (f" of at most {attr.max_items} item" if attr.max_items else "")
        else:
            check = attr.check.describe if attr.check else "any value"
        absent = {"1": "0120", "2": "accepted as empty, logged (0120 with `type2_absent = \"refuse\"`)",
                  "3": "accepted"}[attr.n_create]
        empty = "0121" if attr.n_create == "1" else "accepted"
        rows.append((name, attr.tag_text, attr.n_create, check, absent, empty,
                     "0106" if attr.check or attr.is_sequence else "-"))
        rows += _attribute_rows(attr.items, depth + 1)
    return rows


def _policies_section(configured: str) -> str:
    from workflow.readiness.rules.policy import describe, load_policies
    from workflow.store.resources import policies_location

    location = policies_location(configured)
    text = describe(load_policies(location)).replace("### Workflow policies\n\n", "")
    return text.replace(str(location.parent) + "/", "")  # the same statement on every machine


def render_reconciliation() -> str:
    from workflow.reconcile.rules.compare import MEANING
    from workflow.reconcile.received import UNTAKEN_KEPT as UNTAKEN_INVENTORY_KEPT
    from workflow.reconcile.dimse.repository_query import PAGE_SIZE, RESUME_ATTEMPTS
    from workflow.reconcile.query_path import GIVE_UP_AFTER
    return f"""#### 3.2.9 SOP specific conformance: reconciliation (Inventory Q/R and Creation SCU, Repository Query and Study Root FIND SCU, Inventory Storage SCP)

A reconciliation compares what IANs announced at an archive (instance locations whose Retrieve AE
Title is the archive's, or its `retrieve_ae_title`) with what the archive holds. It runs on demand
(`wfm reconcile run`) or on a cron schedule per archive (`[remote_ae.reconcile]`, section 3.4); one run
per archive at a time, and with several servers on one database a scheduled firing runs once. The
holdings come from one of two paths, chosen by `method`: `inventory`, `query`, or `auto`, which
proposes Inventory FIND, GET, MOVE, Creation, Repository Query and Study Root FIND on one association
and takes the Inventory path when Inventory FIND and the configured retrieve service are accepted,
else the query path.

**Inventory path (Sup 223).** Inventory FIND looks for a COMPLETE, INSTANCE-level inventory taken
within `inventory_max_age_hours` (default 24; 0: always a new one) whose Scope of Inventory covers the
run's scope (matches are grouped per tree and only a root whose Incorporated Inventory Instance
Sequence accounts for the whole group is used). Otherwise Inventory Creation: N-ACTION type 11
(Initiate: Inventory Level INSTANCE, Scope of Inventory, a new Transaction UID, Requested Status
Interval) on the Storage Management SOP Instance 1.2.840.10008.5.1.4.1.1.201.1.1; N-EVENT-REPORT 11
(terminated with instances), 12 (status) and 13 (terminated without instances) are followed, and
N-ACTION type 12 (Request Status) polls after 20 s without an event or when the event association
closes. The root and every incorporated instance are retrieved by C-GET (Inventory Storage in the
SCP role on the same association) or, with `retrieve = "move"`, by C-MOVE to this AE, whose Inventory
Storage SCP keeps them in the database. Inventory instances are read as a stream (Explicit and
Implicit VR Little Endian, defined or undefined lengths), never whole: memory does not grow with the
archive. A FAILURE or CANCELED production, a failed retrieval or a tree whose record counts do not add
up ends the run FAILED. A PARTIAL inventory is used for the studies it lists; an announced study it
does not list is one ARCHIVE_ERROR, never missing (so too with a `days` scope, which the archive
applies by Study Date, an attribute IANs do not carry). Instance availability is taken from the
instance record, or from a series or study record that says ONLINE; Removed from Operational Use at
any level counts; the Retrieve AE Title from the study record or the Study Access End Points.

**Query path.** One association proposing Repository Query and Study Root FIND (Explicit and
Implicit VR Little Endian); Repository Query is used when accepted (unless `repository_query =
false`), and the run's method is recorded as `repository`, else `query`. STUDY level for the studies
in scope (all by default; Study Date range for `days`; Modalities in Study; a Study Instance UID list)
with Number of Study Related Series and Instances, then IMAGE level per study (SOP Class and Instance
UID, Series Instance UID, Instance Availability, Retrieve URL; Retrieve AE Title as the archive adds
it). Memory holds one study at a time. A study whose instance count agrees is taken as matching
without the IMAGE query only with `count_shortcut`. A study the archive fails to answer for is one
ARCHIVE_ERROR; after {GIVE_UP_AFTER} such studies in a row the run ends FAILED.

Over Repository Query every request also asks for Record Key (universal matching), Removed from
Operational Use, and at most {PAGE_SIZE} records (Maximum Number of Records). B001 (the SCU's or the
SCP's limit reached) is taken as the final response of that C-FIND, as PS3.4 C.6.4.4 requires; the
association is then released and the same query is sent again with Prior Record Key set to the last
Record Key received, until Success (a B001 that does not get past the Prior Record Key fails the
query rather than loop). Record Key values are opaque: only sent back. When the
association fails mid-query (aborted, timed out, closed), the query continues after the last Record
Key received on a new association, up to {RESUME_ATTEMPTS} times in a row; A710 (invalid Prior Record Key)
or any other failure status fails the query as on Study Root. Each study is also queried at SERIES
level, and a Y in Removed from Operational Use at STUDY or SERIES level marks every instance below it
removed (C.6.4.1.2: the higher level supersedes and need not be repeated); a removed instance is an
AVAILABILITY_MISMATCH (expected availability against REMOVED). Study Root FIND carries no removal:
over it, removed instances the archive still lists count as held.

**Both paths.** The expected holdings are fixed at the run's cut-off (its start, or the time a
ready-made inventory was taken if earlier): instances notified after it are not compared. Both sides
are merge-joined in key order (the archive's records through a disk spool). Availability is compared
only when the archive reports it, Retrieve AE Title and URL only when both sides have one. Runs,
findings and the SHA-256 of the report's canonical JSON are stored (`wfm report list|show|verify`); a
run whose process died is ended FAILED ("abandoned") after `reconcile_stale_after` seconds without
progress. With the default `feedback = "report"` nothing a run finds changes availability or
readiness. With `feedback = "mark_unavailable"`, after a COMPLETED run, an instance missing at the
archive or Removed from Operational Use becomes UNAVAILABLE at that archive, one reported with another
availability takes the archive's, unless an IAN touched it after the cut-off; the studies concerned
are evaluated for readiness again (section 3.2.6).

{_table(("Finding", "Meaning"), [(str(r), m) for r, m in MEANING.items()])}

The Inventory Storage SCP accepts only Inventory Storage instances (any other SOP class is not
negotiated), stores each as received in its own transaction before answering Success (0000), and
answers A700 (Out of Resources) when it cannot. An instance no reconciliation takes (its run died, or
the archive sent it unasked) is deleted after {UNTAKEN_INVENTORY_KEPT.total_seconds() / 3600:g} hours.
"""


def render(site: Settings | None = None) -> str:
    """The statement for the defaults; with `site`, its policies are the ones described."""
    d = Settings()
    ts_rows = [(UID(str(ts)).name, str(ts)) for ts in TRANSFER_SYNTAXES]
    service_rows = [(s.name, s.sop_class_uid, "No", "Yes") for s in SERVICES]
    service_rows += [(s.name, s.sop_class_uid, "Yes", "No") for s in SCU_SERVICES]
    context_rows = [(s.name, s.sop_class_uid, ", ".join(UID(str(t)).name for t in TRANSFER_SYNTAXES),
                     s.role, "None") for s in SERVICES]
    status_rows = [(s.category, s.hex, s.meaning, condition) for s, condition in STATUS_CONDITIONS]
    availability_rows = [(a.value, BEHAVIOUR[a]) for a in Availability]
    attribute_rows = _attribute_rows(IAN_ATTRIBUTES)
    config_rows = [
        ("AE Title", "`ae_title`", d.ae_title),
        ("Listening port", "`port`", str(d.port)),
        ("Listening address", "`host`", d.host),
        ("Calling AE titles accepted", "`allowed_calling_aes`", "any (empty list), with a warning at start-up"),
        ("Maximum simultaneous associations", "`max_associations`", str(d.max_associations)),
        ("Maximum referenced instances per IAN", "`max_instances_per_ian`", str(d.max_instances_per_ian)),
        ("IAN, MPPS and UPS N-CREATE without a Type 2 attribute", "`type2_absent`",
         f"{d.type2_absent} (stored as empty and logged; refuse: 0120)"),
        ("Network, ACSE and DIMSE timeout (s)", "`network_timeout`", f"{d.network_timeout:g}"),
        ("Time given to requests in flight on shutdown (s)", "`shutdown_grace`", f"{d.shutdown_grace:g}"),
        ("Worklist Label given when absent", "`default_worklist_label`", d.default_worklist_label),
        ("Retention of finished workitems (h)", "`ups_retention_hours`", f"{d.ups_retention_hours:g}"),
        ("First event retry delay (s)", "`event_retry_initial`", f"{d.event_retry_initial:g}"),
        ("Longest event retry delay (s)", "`event_retry_max_interval`", f"{d.event_retry_max_interval:g}"),
        ("Time before an event is undeliverable (s)", "`event_retry_for`", f"{d.event_retry_for:g}"),
        ("Peers (event subscribers, status change recipients, archives)", "`[[remote_ae]]`", "none"),
        ("HTTP face (UPS-RS, IAN and MPPS over HTTP, read API): address, port (0: off)", "`http_host`, `http_port`",
         f"as `host`, {d.http_port}"),
        ("Audit repository (ATNA syslog)", "`audit_repository`", "none (no audit records)"),
        ("AuditSourceID, AuditEnterpriseSiteID", "`audit_source_id`, `audit_enterprise_site_id`", "the AE title, none"),
        ("Reconciliation of an archive: method, cron schedule, scope, retrieve, feedback",
         "`[remote_ae.reconcile]`", "none (manual runs: auto, whole archive, C-GET, report only)"),
        ("A RUNNING reconciliation without progress is abandoned after (s)", "`reconcile_stale_after`",
         f"{d.reconcile_stale_after:g}"),
        ("Inventory made by `wfm inventory build`: study records per Inventory instance", "`--record-limit`",
         str(RECORD_LIMIT)),
    ]
    attr_list = ", ".join(f"{s.hex}" for s in (statuses.MISSING_ATTRIBUTE, statuses.MISSING_ATTRIBUTE_VALUE))
    return f"""# DICOM Conformance Statement: wfm, the open DICOM workflow manager

<!-- Generated by `wfm conformance` from the code. Do not edit by hand: change the code, then run
     `wfm conformance -o conformance/CONFORMANCE.md`. A test fails when this file is stale. -->

Product version {__version__}. Structure after DICOM PS3.2 Annex A.

## 1 Overview

wfm receives Instance Availability Notifications from archives and modalities and records, per SOP
Instance and per location (Retrieve AE Title), how available each instance is; and it keeps a
Unified Procedure Step worklist that schedulers and performers use (Push, Pull, Watch, Query; event
reports to subscribers, delivered reliably); and it records Modality Performed Procedure Steps
with their expected instances. Notifications and performed steps drive the Input Information
Sequence and Input Readiness State of SCHEDULED workitems as declarative policies say (3.2.6).

### Network services

{_table(("SOP Class", "SOP Class UID", "User of Service (SCU)", "Provider of Service (SCP)"), service_rows)}

The command-line tools `wfm ian send` (IAN SCU), `wfm ups create|claim|complete|cancel` (UPS Push, Pull
and Watch SCU) and `wfm mpps send` (MPPS SCU) are for operators and work with any SCP (section 3.2.3).

## 2 Introduction

- Audience: integrators of archives, modalities and schedulers, and PACS administrators.
- Remark: this statement is generated from the running code's tables and checked by the test suite.

## 3 Networking

### 3.1 Implementation model

One Application Entity, `{d.ae_title}` by default, listens for associations. Each association is served
by its own thread; every request is handled in one database transaction, and a success status is
returned only after that transaction has committed. Real-world activity: an archive or modality
notifies availability of instances (IAN N-CREATE); the AE validates the notification, stores it as
received (DICOM JSON, calling AE title, peer address, time) and merges its instances into the store.

### 3.2 AE specification

#### 3.2.1 SOP classes

{_table(("SOP Class", "SOP Class UID", "SCU", "SCP"), service_rows)}

#### 3.2.2 Association policies

- Application Context Name: 1.2.840.10008.3.1.1.1.
- Maximum simultaneous associations: `max_associations` (default {d.max_associations}); further
  requests are rejected (transient, local limit exceeded).
- Calling AE titles: when `allowed_calling_aes` is non-empty, an association from any other calling
  AE title is rejected with result "rejected-permanent", source "DICOM UL service-user", reason
  "calling-AE-title-not-recognized". When the list is empty, any calling AE title is accepted and a
  warning says so at start-up. The called AE title is not checked.
- Asynchronous operations window: not supported (one outstanding operation per association).
- Implementation Class UID: {IMPLEMENTATION_CLASS_UID}
- Implementation Version Name: {IMPLEMENTATION_VERSION_NAME}
- Maximum PDU size received: 16382 bytes.
- TCP_NODELAY is set on every connection, so responses are not delayed by Nagle's algorithm.

#### 3.2.3 Association initiation policy

The server initiates associations to deliver UPS event reports: to each subscriber's Receiving AE
(its `[[remote_ae]]` address), proposing UPS Event with
{", ".join(UID(str(t)).name for t in TRANSFER_SYNTAXES)}, one association per subscriber for
all events owed to it, kept open while events keep coming and released after {KEEP_OPEN:g} s without
one (section 3.2.7). The `wfm ian send` tool initiates one
association per invocation to the given AE, proposing Instance Availability Notification with
{", ".join(UID(str(t)).name for t in TRANSFER_SYNTAXES)}, and sends one IAN per study found in the
given DICOM files: every instance with the given Instance Availability and Retrieve AE Title(s),
optionally a Retrieve URL, and the Referenced Performed Procedure Step Sequence (empty unless a PPS
is named). Each IAN gets a new SOP Instance UID.

The `wfm ups` tools initiate one association per invocation, proposing UPS Push, Pull and Watch with
the same transfer syntaxes; every request names the UPS Push SOP Class and travels on the context of
a SOP class that includes it (PS3.4 CC.3.1.1). `create`: N-CREATE, with a new SOP Instance UID, of a
workitem holding every Type 1 and Type 2 attribute of Table CC.2.5-3 (what is not given: priority
MEDIUM, label "Workitem", start now, Input Readiness State INCOMPLETE, Type 2 attributes empty).
`claim`: N-ACTION Change UPS State to IN PROGRESS with a new Transaction UID. `complete`: N-GET of the
scheduled station and workitem codes, N-SET of the UPS Performed Procedure Sequence (performed station
and workitem codes, start and end DateTime, an empty Output Information Sequence, the Actual Human
Performer when named), then N-ACTION COMPLETED. `cancel` of one's own claimed workitem: N-GET and N-SET
of the Procedure Step Progress Information (Discontinuation Reason Code, by default 110513 DCM, and the
Reason For Cancellation), then N-ACTION CANCELED; of any other: N-ACTION Request UPS Cancel. Each
stops at the first failure status. `wfm mpps send` initiates one association proposing Modality
Performed Procedure Step and sends, per study found in the given DICOM files, an N-CREATE (IN
PROGRESS; patient, study, accession and modality from the files) and then an N-SET COMPLETED (or
DISCONTINUED) whose Performed Series Sequence names every series and instance (image storage classes
in the Referenced Image Sequence, other objects in the Referenced Non-Image Composite SOP Instance
Sequence). `wfm demo` plays these roles, a Storage SCU and a UPS Event SCP (a subscriber) against a
reference archive and a server it starts on 127.0.0.1 only.

Every association the server, its reconciliation jobs or its tools initiate ends with an A-RELEASE,
waiting for the A-RELEASE-RP as long as for any response (`network_timeout` for the server and its
jobs; at most 30 s for event reports) and aborting if none comes. If the release cannot begin within
that time, because our own receiving side of the association is stuck or gone, the association is
aborted (A-ABORT, source service-user) instead, and the log says why. A message, release or abort
that our side has queued when the association is already ending, where PS3.8's state table allows
none (a message once our A-RELEASE-RQ is sent, Sta7; anything once an A-ABORT was sent or received,
Sta13), is not sent: the release completes, or the transport connection is closed, as that table
prescribes.

#### 3.2.4 Association acceptance policy

{_table(("Abstract Syntax", "UID", "Transfer Syntaxes", "Role", "Extended Negotiation"), context_rows)}

Transfer syntaxes in order of preference:

{_table(("Transfer Syntax", "UID"), ts_rows)}

On an accepted association, an operation the server never performs (N-DELETE, an N-EVENT-REPORT sent to
it, C-STORE of anything but a storage SOP class) is answered 0211 (Unrecognized Operation), and a
request without a command element PS3.7 requires for it (a Requested SOP Instance UID, an Action Type
ID, ...) is logged and its association aborted (A-ABORT); neither is left unanswered. A request whose
Affected or Requested SOP Instance UID is longer than 64 characters is answered 0117 (Invalid SOP
Instance, PS3.7 Annex C.4.2), the UID left out of the response, and the association goes on. A UID of up
to 64 characters that breaks the other construction rules (PS3.5 9.1: a letter, a leading zero) is
refused by N-CREATE with 0106; other requests find no instance of that UID.

A request is served only on a presentation context negotiated for its SOP class: the Affected or
Requested SOP Class UID in its command must be the context's abstract syntax, except that UPS requests
carry the UPS Push SOP Class UID on any UPS context (PS3.4 CC.3.1.1; tolerated in a UPS C-FIND too,
where the standard asks for the negotiated UID). A request for another SOP class, or for one the server
does not know, is answered 0118 (No such SOP Class) for DIMSE-N and 0122 (SOP Class not supported) for
DIMSE-C, with the Error Comment "SOP Class not negotiated on this presentation context", and nothing is
done; a DIMSE-N operation that no service performs for a SOP class on its own context (an N-CREATE
with the UPS Pull UID, an N-SET of an IAN) is answered 0118. Either is logged, and the association goes
on.

#### 3.2.5 SOP specific conformance: Verification SCP

C-ECHO requests are answered with status 0000.

#### 3.2.6 SOP specific conformance: Instance Availability Notification SCP

**Validation.** Each N-CREATE data set is checked against PS3.4 Table R.3.2-1 before anything is
stored, by the same attribute-rule engine as MPPS and UPS data sets: when it breaks several rules, the
answer is the first kind of 0105, 0120, 0121, 0106, and a rejected IAN stores nothing; the server
keeps serving the association. Error Comment (0000,0902) names the first attribute; for {attr_list}
the Attribute Identifier List (0000,1005) names every one. {absence_rules(d.type2_absent)} The
notification itself is kept exactly as received. Every outcome is logged with calling AE title,
SOP Class, SOP Instance UID, Study Instance UID and status.

{_table(("Attribute", "Tag", "Type", "Value must be", "Status when absent", "Status when empty",
         "Status when invalid"), attribute_rows)}

Attributes not listed are stored with the notification and otherwise ignored. An N-CREATE without
Affected SOP Instance UID is accepted; the server assigns a UID and returns it in the response.

**Behaviour for each Instance Availability value.** Availability is recorded per SOP Instance and
per location, a location being one Retrieve AE Title. Each item of an IAN sets the availability at
every Retrieve AE Title it lists, with that item's Retrieve URL, Retrieve URI, Retrieve Location UID
and Storage Media File-Set ID/UID (one URL in an item that lists several AE titles belongs to each).
An optional attribute that a later IAN leaves out keeps the value an earlier IAN gave for that
location. For a location, the most recently received IAN wins, whatever order concurrent
transactions commit in. An IAN never deletes anything.

{_table(("Instance Availability", "Behaviour"), availability_rows)}

An instance's availability for workflow is the best over its locations (ONLINE > NEARLINE >
OFFLINE > UNAVAILABLE; between equal values, the most recently notified location first); its
Retrieve AE Titles are the locations where it is not UNAVAILABLE, best first.

**Duplicates.** An IAN whose SOP Instance UID was stored before, with identical content (its DICOM
JSON compared canonically), is answered with Success and changes nothing, so a sender's retry is
safe. The same SOP Instance UID with different content is refused with 0111.

**Relationship to performed procedure steps.** The Referenced Performed Procedure Step Sequence item
(Referenced SOP Class and Instance UID) is recorded with the notification and linked to every
instance the IAN references. The Performed Workitem Code Sequence is stored with the notification.

**Workflow policies** (PS3.4 R.1.1). This section describes the policies in force: the shipped
ones in the published statement; `wfm conformance --config FILE` renders a site's own.

{_policies_section(site.policies if site else '')}

**Status codes.**

{_table(("Category", "Status", "Meaning", "Condition"), status_rows)}

{render_ups(d)}
{render_mpps()}
{render_reconciliation()}
{render_inventory()}
### 3.3 Network interfaces

TCP/IP over IPv4 or IPv6, on the address and port configured (`host`, `port`).

### 3.4 Configuration

Settings come from a TOML file (`--config` or `WFM_CONFIG`) and `WFM_<KEY>` environment variables.

{_table(("Setting", "Key", "Default"), config_rows)}

{render_dicomweb()}

{render_console()}
## 4 Media interchange

Not supported.

## 5 Support of character sets

Data sets are decoded with their Specific Character Set (0008,0005): the default repertoire,
ISO_IR 100, ISO_IR 192 (UTF-8) and the other character sets pydicom supports, including ISO 2022
code extensions. Notifications are stored as DICOM JSON (UTF-8). Error Comments use the default
repertoire.

Data sets the server sends over DIMSE (N-GET and C-FIND responses, N-EVENT-REPORT Event Information)
whose text is all in the default repertoire are sent without a Specific Character Set. One with text
beyond it keeps the character set the workitem was stored with when that set encodes all of its text
(ISO 2022 code extensions are kept as they are), and is otherwise sent in ISO_IR 192 (UTF-8), declared
in its Specific Character Set: a workitem created over UPS-RS, whose DICOM JSON names no character
set, or one given text its stored set cannot encode.

## 6 Security

{render_security()}
{render_audit()}
"""
