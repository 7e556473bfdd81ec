"""The conformance of the inventories wfm builds for archives that cannot (Inventory Q/R SCP, Inventory
Storage SCU of its own inventories) and of the Orthanc bridge as an IAN source, rendered from the
inventory room's own tables and constants."""

from __future__ import annotations

from workflow.conformance.markdown import table
from workflow.inventory import store
from workflow.inventory.dimse import qr_scp
from workflow.inventory.job import RECORD_LIMIT
from workflow.inventory.produce import KEEP
from workflow.inventory.rules.iod import MANUFACTURER

# contrib/orthanc/wfm_bridge.py's answers (tests/contrib checks these against the bridge itself).
BRIDGE_SET_ASIDE = (400, 409, 413)
BRIDGE_RETRIED = ("no answer", "5xx", "401", "403", "429")


def render_inventory() -> str:
    statuses = [
        ("Success", "0000", "Matching ended; all sub-operations done"),
        ("Pending", "FF00", "A match (FIND), or a sub-operation under way (GET, MOVE)"),
        ("Cancel", "FE00", "C-CANCEL received"),
        ("Warning", f"{qr_scp.SOME_FAILED:04X}", "GET/MOVE: some SOP Instance UIDs are not held; Failed SOP "
                                                  "Instance UID List names them"),
        ("Failure", f"{qr_scp.SUB_OPERATIONS_FAILED:04X}", "GET/MOVE: none of the SOP Instance UIDs is held "
                                                           "(Failed SOP Instance UID List)"),
        ("Failure", f"{qr_scp.IDENTIFIER_DOES_NOT_MATCH:04X}",
         "GET/MOVE identifier with Query/Retrieve Level, or without SOP Instance UID; FIND with a Total Number "
         "of Study Records that is not a number"),
        ("Failure", "A801", "MOVE: the Move Destination is no configured `[[remote_ae]]`"),
    ]
    keys = [("SOP Class UID", "single value (only Inventory Storage matches)"),
            ("SOP Instance UID", "single value or list"),
            ("Transaction UID", "universal only (these inventories are not made by Inventory Creation; a value "
                                "matches nothing); returned empty"),
            ("Content Date, Content Time", "single value or range"),
            *((k, "single value, `*` and `?` wild cards") for k in
              ("Inventory Purpose", "Inventory Instance Description", "Inventory Level",
               "Inventory Completion Status")),
            ("Total Number of Study Records", "single value"),
            ("Scope of Inventory Sequence", "universal matching only; returned"),
            ("Retrieve AE Title, Number of Study Records in Instance, Specific Character Set", "always returned")]
    assert len(store.STRING_KEYS) == 4  # the four string keys listed above
    return f"""#### 3.2.10 SOP specific conformance: Inventory Q/R SCP and Inventory Storage SCU (inventories made by wfm)

For an archive that offers neither Inventory Creation nor Inventory Q/R, `wfm inventory build ARCHIVE`
(a configured `[[remote_ae]]`; `--days`, `--modality`, by default the archive's reconciliation scope)
makes the Inventory: it lists the archive by Study Root C-FIND (STUDY level with the study record's
attributes, then SERIES and IMAGE level per study, with the reconciliation query path's client) and
stores standard Inventory SOP instances (PS3.3 A.88.3: General Equipment, Inventory, SOP Common;
Manufacturer "{MANUFACTURER}"): Inventory Level INSTANCE, Scope of Inventory as asked (Study Date range,
Modalities in Study), study records in Study Instance UID order each with the archive's AE as Retrieve
AE Title (that is where the instances are; its `retrieve_ae_title` when set), Item Inventory DateTime the time the study was listed, and
Study Update DateTime empty (C-FIND does not tell). Above {RECORD_LIMIT} study records per instance
(`--record-limit`) the inventory is split into a tree: leaves of study records and index instances
(100 children each) whose Incorporated Inventory Instance Sequence lists their whole subtree, up to one
root. Every answer is kept in the database as it comes, so a crawl that stops (the archive goes away)
resumes where it stopped when the same command runs again. The inventory is stored in one transaction
when the crawl ends; the archive's inventories older than its newest {KEEP} are removed in it.
Inventory Completion Status is COMPLETE only when every study in scope was listed; a study whose
listing failed makes it PARTIAL, the Inventory Instance Description naming how many and which: their instances are in no record, so a consumer must not take them as missing.

The instances are served by this AE as an Inventory Q/R SCP (PS3.4 JJ). An association whose Called AE
Title is an archive's title (e.g. `ORTHANC` at this server's address) sees that archive's inventories
only, as if the archive itself answered; called by this AE's own title it sees every archive's. FIND
matches every node of a tree on its own attributes, oldest first:

{table(("Key", "Matching"), keys)}

GET and MOVE take the SOP Instance UID (one or a list) and no Query/Retrieve Level; the instances go as
C-STORE sub-operations of Inventory Storage (1.2.840.10008.5.1.4.1.1.201.1, Explicit VR Little Endian),
on the same association for GET (the requestor's SCP role for Inventory Storage is accepted), to the
`[[remote_ae]]` named as Move Destination for MOVE. Retrieve AE Title in FIND answers is the AE title the
association called.

{table(("Category", "Status", "Condition"), statuses)}

#### 3.2.11 The Orthanc bridge as an IAN source (contrib/orthanc)

`contrib/orthanc/wfm_bridge.py`, loaded by Orthanc's Python plugin, makes Orthanc a source of IANs: when
Orthanc declares a study stable it sends one IAN (SOP Class 1.2.840.10008.5.1.4.33, as DICOM JSON to
`POST /api/ian` with a bearer token holding the `notify` right) naming every instance of the study:
Referenced SOP Class and Instance UID, Instance Availability ONLINE, Retrieve AE Title Orthanc's AE
title (or `RetrieveAETitle`), and, with Orthanc's DICOMweb plugin, the instance's Retrieve URL; the
Referenced Performed Procedure Step Sequence is empty. A study above `MaxInstancesPerIan` (5000) is
announced in several IANs. Each IAN waits in a queue folder until this server answered 200 (committed);
{", ".join(BRIDGE_RETRIED)} are retried with a doubling delay up to `RetryMaxInterval`;
HTTP {", ".join(map(str, BRIDGE_SET_ASIDE))} (the content refused) set the IAN aside and log it. A resend
carries the same IAN UID and content, which this server takes as a no-op success. Orthanc does not
report deletions and forgets studies that were not yet stable when it stopped: scheduled reconciliation
of Orthanc (query path) covers both.
"""
