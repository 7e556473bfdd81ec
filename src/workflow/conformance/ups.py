"""The UPS sections of the conformance statement, rendered from the UPS tables in the code."""

from __future__ import annotations

from workflow.config import Settings
from workflow.readiness.rules import procedure
from workflow.mpps.rules import procedure_step as mpps
from workflow.ups.rules import state as st
from workflow.kernel.attributes import Attr, absence_rules
from workflow.ups.rules.attributes import UPS_ATTRIBUTES
from workflow.ups.worklist import STATUS_CONDITIONS
from workflow.ups.rules.events import EVENT_NAMES
from workflow.ups.rules.matching import iter_matching_keys
from workflow.conformance.markdown import table as _table

def _attribute_rows(attrs: tuple[Attr, ...], depth: int = 0) -> list[tuple[str, ...]]:
    rows = []
    for a in attrs:
        rows.append((">" * depth + a.keyword, a.tag_text if hasattr(a, "tag_text") else a.tag,
                     a.n_create, a.n_set, a.final, a.match or "-"))
        rows += _attribute_rows(a.items, depth + 1)
    return rows


def _matching_rows() -> list[tuple[str, ...]]:
    rows = []
    for parents, key in iter_matching_keys():
        name = ">" * len(parents) + key.keyword
        kinds = ", ".join(sorted(k for k in key.kinds if k != "universal")) or "-"
        rows.append((name, f"({key.tag[:4]},{key.tag[4:]})", key.key_type, kinds))
    return rows


def render_ups(d: Settings) -> str:
    status_rows = [(s.category, s.hex, s.meaning, condition) for s, condition in STATUS_CONDITIONS]
    event_rows = [(str(k), v) for k, v in EVENT_NAMES.items()]
    return f"""#### 3.2.7 SOP specific conformance: Unified Procedure Step SCP (Push, Pull, Watch, Query)

The worklist follows PS3.4 Annex CC. N-CREATE, N-GET, N-SET and N-ACTION requests carry the UPS
Push SOP Class UID and are accepted on any negotiated UPS context (Push, Pull, Watch or Query);
C-FIND is accepted on the Pull, Watch and Query contexts. Each request is one database transaction:
the response is sent after the commit, and every event a subscriber is owed is written to an outbox
in that same transaction.

**States.** PS3.4 Table CC.1.1-2, as the server implements it (the code's own table):

{st.state_table_markdown()}

The Transaction UID is the lock: a performer supplies a new one with Change State to IN PROGRESS;
every later N-SET and N-ACTION must carry it. It is kept after a final state (so a repeated request
gets B304/B306, not C301), and is never returned by N-GET or C-FIND.

**N-CREATE.** Validated against Table CC.2.5-3 (below): Type 1 present and not empty, Type 2
present, Procedure Step State SCHEDULED (else C309, checked first), Transaction UID empty, Progress
Information and Performed Procedure sequences created empty. {absence_rules(d.type2_absent)} Coercions (answered with B300 when the
SCU can see them): Worklist Label defaults to `default_worklist_label` (`{d.default_worklist_label}`);
Scheduled Procedure Step Modification DateTime is stamped with the time of creation (and of every
N-SET); SOP Class UID and SOP Instance UID are set. A request without Affected SOP Instance UID gets
one assigned and returned. New workitems are reported (event 1, and event 5 when a station or human
performer is assigned) to the global subscribers that cover them.

**Changes the SCP makes itself.** For a SCHEDULED workitem that names a study (Study Instance UID or
a Referenced Request Sequence item), the readiness policies (section 3.2.6) set the Input Readiness
State and the Input Information Sequence, at creation and after an IAN or a COMPLETED MPPS of the
study arrives (the study is marked in that transaction and evaluated once no mark has come for
`readiness_delay`, {d.readiness_delay} s, so a burst of IANs costs one evaluation, or, during a burst that
never pauses that long, every `readiness_max_wait`, {d.readiness_max_wait} s; marks are kept in the
database and survive restarts), or
a settle time passes (timers are kept in the database too). A policy that links by Accession Number
also reaches a workitem whose Referenced Request names the Accession Number an MPPS of the study gives.
Each change of Input Readiness State is reported (event 1). The Input Information Sequence then holds
one item per series, Retrieve AE Title and file-set (Type of Instances DICOM, Study and Series Instance
UID, Referenced SOP Sequence, DICOM Retrieval Sequence, a WADO-RS Retrieval Sequence with the series URL
when the IAN gave Retrieve URLs, and a DICOM Media Retrieval Sequence with Storage Media File-Set ID and
UID when the IAN gave a File-Set UID); it replaces what the creator sent. A workitem its creator made
READY is left alone. IN PROGRESS and final workitems are never changed. Templates (section 3.2.6)
create workitems themselves, under the N-CREATE rules above, INCOMPLETE at creation, with a SOP
Instance UID derived from the template and the study so that a study gets one per template; they
are reported to global subscribers like any new workitem.

**N-SET.** Allowed while SCHEDULED (no Transaction UID; with one: C310) and while IN PROGRESS (with
the Transaction UID, else C301); refused in final states (C300). Attributes Table CC.2.5-3 does not
allow in N-SET (patient and request context, Procedure Step State, the SOP UIDs) are refused with
0105. Sequences are replaced whole. A change of Input Readiness State sends event 1, of the Progress
Information event 3, of station or human performers event 5.

**N-GET.** Returns the requested attributes, or all of them when none are named; requested
attributes the workitem lacks come back empty; the Transaction UID never; tags that are no attribute of
a workitem (groups 0000, 0001, 0002, 0003, 0005, 0007, FFFE and FFFF, and group lengths gggg,0000) are
left out. When nothing is left to return, the response is Success with no data set (Command Data Set
Type 0101). Unknown UID: C307.

**Request Cancel.** A SCHEDULED workitem is canceled by the server itself (reports IN PROGRESS, then
CANCELED); it records the Procedure Step Cancellation DateTime, the requester's Reason for
Cancellation, Discontinuation Reason Code (or (110513, DCM, "Discontinued for unspecified reason")
when none was given), Contact URI and Display Name. For an IN PROGRESS workitem the request is passed
to the subscribers as event 2 (UPS Cancel Requested, with the Requesting AE); success means
"acknowledged", the performer decides.

**Subscriptions.** Subscribe (Action 3) to one workitem, to the Global Subscription instance
1.2.840.10008.5.1.4.34.5 (every workitem), or to the Filtered Global Subscription instance
1.2.840.10008.5.1.4.34.5.1 (workitems matching the C-FIND-style keys sent with the action). The
Receiving AE must be a configured `[[remote_ae]]` (else C308). A workitem subscription gets an
initial State Report at once; a global or filtered subscription with Deletion Lock TRUE gets one for
each SCHEDULED or IN PROGRESS workitem it covers. Unsubscribe (Action 4) from one workitem (a global
subscriber then stops hearing about it), from the global instance (every subscription and lock of
that AE) or from the filtered instance. Suspend (Action 5) stops a global subscription from covering
workitems created afterwards; those it covered stay subscribed. Subscriptions survive restarts.

**Event reports** (sent as SCU of the UPS Event SOP Class, Affected SOP Class the Push UID, over an
association this server opens to the Receiving AE's configured address):

{_table(("Event Type ID", "Event"), event_rows)}

Event 1 is sent on creation, on every change of Procedure Step State (each intermediate state too)
and on every change of Input Readiness State, including changes the server makes itself. Events are
delivered in order per subscriber; a failed delivery is retried after {d.event_retry_initial:g} s,
doubling up to {d.event_retry_max_interval:g} s (`event_retry_initial`, `event_retry_max_interval`),
for {d.event_retry_for:g} s (`event_retry_for`), after which the event is marked undeliverable and
logged as an error. Later events to the same subscriber wait behind an undelivered one. `wfm events
--pending` lists every owed event with its attempts and last error. Event 4 (SCP Status Change:
RESTARTED on start, GOING DOWN on shutdown, with Subscription List Status and UPS List Status WARM
START, Affected SOP Instance the Global Subscription instance) goes to every subscriber and to each
`[[remote_ae]]` with `status_change = true`.

**Retention.** COMPLETED and CANCELED workitems stay retrievable (N-GET, C-FIND) for
`ups_retention_hours` ({d.ups_retention_hours:g} h) after they reached their final state, and longer
while any subscriber covering them holds a Deletion Lock; then they are deleted (checked every 10
minutes).

**C-FIND.** A single-level worklist query; matching runs in the database. Matching per PS3.4
C.2.2.2: single value, wildcard (`*`, `?`) on string VRs (CS included), list of UIDs, range on DA, TM
and DT (open ranges too; a partial date or time covers the whole span it names; UTC offsets are
dropped, not converted), universal (empty value), and sequence matching where an item of the
workitem's sequence matches when all non-universal keys of the query item match in that same item,
whichever item it is. Person names match case-insensitively on the Alphabetic group (on SQLite the
letters A-Z only; on PostgreSQL as the database's character type folds case, all of Unicode under
`C.UTF-8` or `en_US.UTF-8`); every other string case-sensitively. An empty stored value does not match a
non-universal key. Keys the server does not support for matching are ignored as matching keys and returned empty. Return keys come back
filled from the workitem (a sequence return key returns whole items); the Transaction UID is never
returned with a value: an Identifier whose only key is the Transaction UID gets one Pending response
per match holding it zero-length (a Pending response must carry an Identifier, PS3.7 C.4.1.1), and one
with no returnable key at all (only command, file meta, item or group length tags) gets Success with
no Pending response. Matches come in Scheduled Procedure Step Start DateTime order, then SOP Instance UID.
C-CANCEL stops the search (FE00).

{_table(("Matching key", "Tag", "Type", "Matching"), _matching_rows())}

**UPS attributes** (Table CC.2.5-3 as the server enforces it; N-CREATE / N-SET requirement, Final
State requirement R, P (COMPLETED), X (CANCELED), RC (conditional), O; matching key type):

{_table(("Attribute", "Tag", "N-CREATE", "N-SET", "Final", "Match"), _attribute_rows(UPS_ATTRIBUTES))}

**UPS status codes.**

{_table(("Category", "Status", "Meaning", "Condition"), status_rows)}
"""


def render_mpps() -> str:
    status_rows = [(s.category, s.hex, s.meaning, condition) for s, condition in mpps.STATUS_CONDITIONS]
    return f"""#### 3.2.8 SOP specific conformance: Modality Performed Procedure Step SCP

Follows PS3.4 Annex F. N-CREATE must carry Performed Procedure Step Status IN PROGRESS; N-SET
updates the step (sequences replaced whole) and may set COMPLETED or DISCONTINUED when the Final
State requirements of Table F.7.2-1 hold (Performed Procedure Step End Date and Time, and a Performed
Series Sequence whose items carry Series Instance UID and Protocol Name). {absence_rules(Settings().type2_absent)}
A COMPLETED or DISCONTINUED step is no longer updated. Each
request is one database transaction, answered after the commit.

The step's Scheduled Step Attributes Sequence items (Study Instance UID, Accession Number, Requested
Procedure ID, Scheduled Procedure Step ID) and the instances its Performed Series Sequence references
(Referenced Image and Non-Image Composite SOP Instance Sequences) are recorded; the instances of a
COMPLETED step are its expected instance set, which drives UPS Input Readiness (section 3.2.6).

{mpps.state_table_markdown()}

{_table(("Category", "Status", "Meaning", "Condition"), status_rows)}

**Requested procedures.** The server tracks each requested procedure that a UPS Referenced Request
Sequence item or an MPPS Scheduled Step Attributes item names (Study Instance UID, Accession Number,
Requested Procedure ID), and each study an IAN announces that no request names (IANs carry no request
attributes: they join through the Study Instance UID; the first request naming that study takes the
IAN-only record over). Its state follows from the facts whenever the study is evaluated for readiness,
moving only along these transitions (`wfm study` shows them):

{_table(("State", "Meaning"), list(procedure.STATES.items()))}

{_table(("Trigger", "From", "To"), [(t, ", ".join(src), dst) for t, src, dst in procedure.TRANSITIONS])}
"""
