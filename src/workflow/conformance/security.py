"""The security section's profiles, TLS settings, rights model and limits, rendered from the code that
applies them (tls.py, rights.py, the settings' defaults)."""

from __future__ import annotations

from pydicom.uid import UID

from workflow.config import Settings
from workflow.conformance.markdown import table
from workflow.rights import CONTEXTS, MEANING, OPERATIONS, Right
from workflow.tls import BCP195_TLS12

NAMES = {
    "1.2.840.10008.5.1.4.33": "Instance Availability Notification",
    "1.2.840.10008.3.1.2.3.3": "Modality Performed Procedure Step",
    "1.2.840.10008.5.1.4.34.6.1": "UPS Push",
    "1.2.840.10008.5.1.4.34.6.2": "UPS Watch",
    "1.2.840.10008.5.1.4.34.6.3": "UPS Pull",
    "1.2.840.10008.5.1.4.34.6.5": "UPS Query",
    "1.2.840.10008.5.1.4.1.1.201.1": "Inventory Storage",
}


def _name(sop_class: str) -> str:
    return NAMES.get(sop_class) or UID(sop_class).name


ACTIONS = {1: "change state", 2: "request cancellation", 3: "subscribe", 4: "unsubscribe", 5: "suspend"}


def render_security() -> str:
    d = Settings()
    operation_rows = [(_name(sop_class), command + (f" {action} ({ACTIONS[action]})" if action else ""), right.value)
                      for (sop_class, command, action), right in OPERATIONS.items()]
    context_rows = [(_name(sop_class), sop_class, ", ".join(sorted(r.value for r in rights)))
                    for sop_class, rights in CONTEXTS.items()]
    right_rows = [(r.value, MEANING[r]) for r in dict.fromkeys(Right)]
    limit_rows = [
        ("Largest PDU received (announced in the A-ASSOCIATE-AC)", "`max_pdu_size`", f"{d.max_pdu_size} bytes"),
        ("Largest data set of one request (larger: A-ABORT, nothing stored); over HTTP, the largest request "
         "body (larger: 413 before it is read, or once a chunked body passes it)", "`max_dataset_bytes`",
         f"{d.max_dataset_bytes} bytes"),
        ("Associations open at once, in all", "`max_associations`", str(d.max_associations)),
        ("Associations open at once per calling AE title (more: A-ASSOCIATE-RJ transient, local limit). "
         "Counted from admission, under one lock, to the association's end: requests arriving together "
         "get exactly the places left, and a refused one holds none", "`max_associations_per_ae`",
         str(d.max_associations_per_ae)),
        ("Associations open at once per address (counted the same way)", "`max_associations_per_address`",
         str(d.max_associations_per_address)),
        ("ARTIM: seconds a new connection may stay silent or stall its TLS handshake", "`artim_timeout`",
         f"{d.artim_timeout:g}"),
        ("Refusals told one by one, per kind (Node Authentication, Use of Restricted Function) and source "
         "address, in a minute: a refused association or TLS handshake, a request outside its rights, a refused "
         "token. Past it they are counted, and the count is logged and recorded as one Security Alert when "
         "the minute ends or the server stops (\"N more refusals (...) from ADDRESS between T1 and T2\"); the "
         "requests are refused all the same. 0: every refusal told", "`refusals_per_minute`",
         str(d.refusals_per_minute)),
        ("Seconds without a PDU on an established association before it is aborted; also the seconds a "
         "send may wait on a peer that has stopped reading, before the connection is closed; over HTTP, the "
         "seconds a request's headers may take from the connection or the request's first byte (then 408 and "
         "the connection closed) and the longest pause in its body (then the connection closed)",
         "`network_timeout`", f"{d.network_timeout:g}"),
    ]
    suites = ", ".join(f"`{s}`" for s in BCP195_TLS12.split(":"))
    return f"""### 6.1 Security profiles and TLS

**Secure transport (PS3.15 B.9, BCP 195 TLS Secure Transport Connection Profile, non-downgrading).** With
`tls_port` set (2762 is DICOM-TLS's registered port), a TLS listener runs beside the plain one (`port`);
either may be turned off (`port = 0`). TLS 1.2 and 1.3 only: TLS 1.2 limited to the profile's suites
({suites}); TLS 1.3's suites as OpenSSL offers them; no compression, no renegotiation, no fallback. Our
certificate and key: `tls_certificate`, `tls_private_key` (PEM). Client certificates are verified
against `tls_ca_certificates` and, while `tls_require_client_certificate` is true (the default), required.
The handshake runs in the connection's own thread under the ARTIM timeout, so a slow or broken handshake
never delays another association; a failed one is logged with the peer's address and reason and recorded
as a Security Alert (Node Authentication).

Outgoing associations (event subscribers, reconciled archives) use TLS where their `[[remote_ae]]` says
`tls = true`: the peer's certificate is verified against `tls_ca_certificates` and its host name (or
address), and our certificate is offered.

The HTTP face serves HTTPS on `https_port` with the same certificate and protocol settings; it asks no
client certificate (HTTP clients authenticate by bearer token, section 3.6). Its handshakes, too, run under
the ARTIM timeout without delaying other connections, and a failed one is logged and recorded as a
Security Alert (Node Authentication).

**No** User Identity Negotiation; the calling AE title, its address and (over TLS) its certificate
identify a peer.

### 6.2 Access control: per-AE rights

Each `[[client_ae]]` table names a calling AE title, the `rights` it holds, optionally the `hosts`
(addresses or networks, `"10.1.2.3"`, `"10.1.0.0/16"`) it may connect from and the `certificate_subject`
(`"CN=...,O=..."`) its TLS client certificate must carry. With any `[[client_ae]]`, a calling AE title
not listed, coming from another host or (over TLS) with another certificate subject is rejected at
association (A-ASSOCIATE-RJ permanent, "calling AE title not recognized" or "no reason given") and
recorded as a Security Alert. Without `[[client_ae]]`, `allowed_calling_aes` lists AE titles holding every
right; with neither, any calling AE is accepted with every right (logged as a warning at start-up).
HTTP tokens (`wfm token create NAME --rights ...`) hold the same rights. The server keeps only a token's
hash, and no log line carries a token: one in a URL (the event channel's `access_token`) is logged as
`[redacted]`.

{table(("Right", "Allows"), right_rows)}

A presentation context is accepted only for a SOP class the calling AE holds a right for; the others are
rejected with result 1 (user rejection). Verification is open to every admitted AE.

{table(("SOP class", "UID", "Context accepted with any of"), context_rows)}

A request the calling AE has no right to is refused with 0124 (Refused: Not Authorized), C-FIND included
(a refusal, never an empty success), logged, and recorded as a Security Alert (Use of Restricted Function):

{table(("SOP class", "Request", "Right needed"), operation_rows)}

### 6.3 Limits

Limits that keep one peer from hurting the others; each is a setting.

{table(("Limit", "Setting", "Default"), limit_rows)}
"""
