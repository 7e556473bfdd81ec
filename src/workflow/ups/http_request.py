"""UPS-RS requests (PS3.18 chapter 11) read into what the worklist service takes: query parameters into a
C-FIND Identifier or a subscription's Action Information, the Transaction UID parameter whatever its
spelling, payloads checked to be DICOM JSON (PS3.18 F.2). Pure: no web framework here. Anything
malformed raises `BadRequest` (400) before the service is called.

Search parameters (PS3.18 8.3.4): `{attribute}={value}` where the attribute is a keyword or a tag
(`PatientID`, `00100020`), a sequence's item attribute a dotted path in either form
(`ScheduledStationNameCodeSequence.CodeValue`, `00404025.00080100`, mixed); an empty value is a
return key with universal matching; a PN value matches the Alphabetic group; a UI value may list
several UIDs separated by commas (or backslashes). `includefield` (repeated or comma-separated, `all`),
`limit`, `offset`, `fuzzymatching` and `emptyvaluematching` (neither supported: a Warning says so)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from workflow.kernel import dicom_json_check

JsonDataset = dict[str, Any]
Params = Sequence[tuple[str, str]]

# The Transaction UID parameter of Update: `transaction` (2014), `transaction-uid`, `Transaction-uid` in
# later editions; compared in lower case, with `-` and `_` alike.
TRANSACTION_UID_NAMES = frozenset({"transaction", "transaction-uid", "transactionuid"})
SEARCH_CONTROLS = frozenset({"includefield", "limit", "offset", "fuzzymatching", "emptyvaluematching"})
GLOBAL_UID, FILTERED_UID = "1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"
TRANSACTION_UID, SOP_INSTANCE_UID, SOP_CLASS_UID = "00081195", "00080018", "00080016"
RECEIVING_AE, DELETION_LOCK, PROCEDURE_STEP_STATE = "00741234", "00741230", "00741000"
NUMBER_VRS = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}
REQUESTABLE_STATES = ("IN PROGRESS", "COMPLETED", "CANCELED", "SCHEDULED")
MAX_COUNT = 2 ** 31 - 1  # the largest limit or offset (a 32-bit signed integer, as the query layer takes)
# Tags that are no attribute of a data set: command (0000), file meta (0002), items and delimiters (FFFE).
NOT_ATTRIBUTES = {"0000": "a command element", "0002": "a file meta element", "FFFE": "an item or delimiter tag"}
NOT_SUPPORTED = {
    "fuzzymatching": "The fuzzymatching parameter is not supported. Only literal matching has been performed.",
    "emptyvaluematching": "The emptyvaluematching parameter is not supported. Empty Value Matching has not "
                          "been performed.",
}


class BadRequest(ValueError):
    """A request refused with 400 before the service is called; the message says what is wrong."""


class UnsupportedMedia(BadRequest):
    """A payload declared as a media type other than DICOM JSON: refused with 415, unread."""


@dataclass
class Search:
    identifier: JsonDataset
    limit: int | None = None
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def is_transaction_uid_name(name: str) -> bool:
    return _key(name).replace("-", "") in {n.replace("-", "") for n in TRANSACTION_UID_NAMES}


def transaction_uid(params: Params) -> str | None:
    """The Transaction UID of an Update, under any of its names in any letter case."""
    found = {value.strip() for name, value in params if is_transaction_uid_name(name)}
    if len(found) > 1:
        raise BadRequest("several different Transaction UIDs in the query")
    return next(iter(found), None) or None


# ------------------------------------------------------------------ attributes named in a query

def vr_of(tag: str) -> str:
    group = NOT_ATTRIBUTES.get(tag[:4].upper())
    if group:
        raise BadRequest(f"{tag}: {group} (group {tag[:4].upper()}), not an attribute of a data set")
    try:
        vr = dictionary_VR(int(tag, 16)).split(" or ")[0]
    except (KeyError, ValueError):
        raise BadRequest(f"{tag}: not an attribute of the DICOM dictionary") from None
    if vr == "NONE":
        raise BadRequest(f"{tag}: not an attribute with a value (no value representation)")
    return vr


def resolve(path: str) -> tuple[str, ...]:
    """'ScheduledStationNameCodeSequence.CodeValue' or '00404025.00080100' -> ('00404025', '00080100')."""
    tags = []
    for part in path.split("."):
        part = part.strip()
        if len(part) == 8 and all(c in "0123456789abcdefABCDEF" for c in part):
            tag = part.upper()
            vr_of(tag)
        else:
            number = tag_for_keyword(part) if part.isidentifier() else None
            if number is None:
                raise BadRequest(f"{path!r}: {part!r} is not a DICOM keyword or tag")
            tag = f"{number:08X}"
        tags.append(tag)
    for tag in tags[:-1]:
        if vr_of(tag) != "SQ":
            raise BadRequest(f"{path!r}: {keyword_for_tag(int(tag, 16)) or tag} is not a sequence")
    return tuple(tags)


def _element(tag: str, value: str, path: str) -> dict[str, Any]:
    vr = vr_of(tag)
    if value == "":
        return {"vr": vr}
    if vr == "SQ":
        raise BadRequest(f"{path!r}: a sequence is matched by its item attributes ({path}.Keyword=value)")
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": value}]}
    if vr == "UI":
        return {"vr": vr, "Value": [v.strip() for v in value.replace("\\", ",").split(",")]}
    if vr in NUMBER_VRS:
        try:
            return {"vr": vr, "Value": [NUMBER_VRS[vr](value)]}
        except ValueError:
            raise BadRequest(f"{path!r}: {value!r} is not a number") from None
    return {"vr": vr, "Value": [value]}


def _put(ds: JsonDataset, tags: tuple[str, ...], element: dict[str, Any], path: str) -> None:
    """Place `element` at `tags` in the identifier, a sequence key's item shared by its attributes."""
    tag = tags[0]
    if len(tags) == 1:
        if "Value" in ds.get(tag, {}) and "Value" in element:
            raise BadRequest(f"{path!r} is given twice")
        if "Value" not in element and tag in ds:
            return  # a return key adds nothing to a key already there
        ds[tag] = element
        return
    seq = ds.get(tag)
    if seq is None or not seq.get("Value"):
        seq = ds[tag] = {"vr": "SQ", "Value": [{}]}
    _put(seq["Value"][0], tags[1:], element, path)


def _attributes(pairs: Iterable[tuple[str, str]]) -> JsonDataset:
    ds: JsonDataset = {}
    for name, value in pairs:
        _put(ds, resolve(name), _element(resolve(name)[-1], value.strip(), name), name)
    return ds


def _count(name: str, value: str, low: int) -> int:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,20}", text):  # int() would take "1_000", "٣" and 4300 digits
        raise BadRequest(f"{name}={value[:24]!r}: not a whole number from {low} to {MAX_COUNT}")
    number = int(text)
    if not low <= number <= MAX_COUNT:
        raise BadRequest(f"{name}={value!r}: must be from {low} to {MAX_COUNT}")
    return number


def parse_search(params: Params, default_keys: Iterable[str], all_keys: Iterable[str]) -> Search:
    """The Search Transaction's query as a C-FIND Identifier with its return keys: `default_keys` (tags)
    always, the includefield ones, or `all_keys` for includefield=all."""
    search = Search({})
    attributes: list[tuple[str, str]] = []
    included: list[str] = []
    for name, value in params:
        key = _key(name)
        if key == "includefield":
            included += [v.strip() for v in value.split(",") if v.strip()]
        elif key == "limit":
            search.limit = _count("limit", value, 1)
        elif key == "offset":
            search.offset = _count("offset", value, 0)
        elif key in NOT_SUPPORTED:
            if value.strip().lower() not in ("true", "false"):
                raise BadRequest(f"{key}={value!r}: must be true or false")
            if value.strip().lower() == "true":
                search.warnings.append(NOT_SUPPORTED[key])
        else:
            attributes.append((name, value))
    search.identifier = _attributes(attributes)
    keys = list(default_keys)
    if any(v.lower() == "all" for v in included):
        keys += list(all_keys)
    for path in (v for v in included if v.lower() != "all"):
        tags = resolve(path)
        _put(search.identifier, tags, {"vr": vr_of(tags[-1])}, path)
    for tag in keys:
        if tag not in search.identifier:
            search.identifier[tag] = {"vr": vr_of(tag)}
    return search


def query_params(identifier: JsonDataset) -> list[tuple[str, str]]:
    """The inverse of `parse_search`: a C-FIND Identifier as Search query parameters (matching keys as
    `Keyword=value`, sequence items as dotted paths, return keys as `includefield`)."""
    out: list[tuple[str, str]] = []

    def walk(ds: JsonDataset, prefix: str) -> None:
        for tag, element in ds.items():
            name = prefix + (keyword_for_tag(int(tag, 16)) or tag)
            found = element.get("Value") or []
            if element.get("vr") == "SQ" and found and found[0]:
                walk(found[0], name + ".")
            elif not found or found == [""]:
                out.append(("includefield", name))
            elif element.get("vr") == "PN":
                v = found[0]
                out.append((name, v.get("Alphabetic", "") if isinstance(v, dict) else str(v)))
            else:
                out.append((name, ",".join(str(v) for v in found)))

    walk(identifier, "")
    return out


# ------------------------------------------------------------------ subscriptions

def ae_title(text: str) -> str:
    title = text.strip()
    if not title or len(title) > 16 or "\\" in title or any(not " " <= c <= "~" for c in title):
        raise BadRequest(f"{text!r} is not an AE title (1 to 16 printable characters, no backslash)")
    return title


def subscription(target_uid: str, aetitle: str, params: Params, *, subscribing: bool) -> JsonDataset:
    """The Action Information of Subscribe (`deletionlock`, and `filter` for the Filtered Worklist),
    Unsubscribe or Suspend (`subscribing=False`: no parameters)."""
    info: JsonDataset = {RECEIVING_AE: {"vr": "AE", "Value": [ae_title(aetitle)]}}
    lock, filters = "FALSE", []
    for name, value in params:
        key = _key(name)
        if subscribing and key == "deletionlock":
            if value.strip().lower() not in ("true", "false"):
                raise BadRequest(f"deletionlock={value!r}: must be true or false")
            lock = value.strip().upper()
        elif subscribing and key == "filter":
            filters += [part for part in value.split(",") if part.strip()]
        else:
            raise BadRequest(f"{name!r} is not a parameter of this transaction")
    if filters and target_uid != FILTERED_UID:
        raise BadRequest(f"filter applies to the Filtered Worklist ({FILTERED_UID}) only")
    pairs = []
    for part in filters:
        name, equals, value = part.partition("=")
        if not equals:
            raise BadRequest(f"filter {part!r}: not attribute=value")
        pairs.append((name, value))
    info.update(_attributes(pairs))
    if subscribing:
        info[DELETION_LOCK] = {"vr": "CS", "Value": [lock]}
    return info


# ------------------------------------------------------------------ payloads

def check_dataset(ds: Any) -> JsonDataset:
    """A payload as DICOM JSON the DICOM face can encode again (`kernel.dicom_json_check`: tags, VRs, value
    types and lengths), keys in upper case; BadRequest naming the first fault and its path."""
    try:
        return dicom_json_check.check(ds)
    except dicom_json_check.DicomJsonError as exc:
        raise BadRequest(str(exc)) from None


def change_state(ds: JsonDataset) -> JsonDataset:
    """The Change State payload: Procedure Step State must name a state (the service decides the rest,
    a missing Transaction UID included, as Table CC.1.1-2 does)."""
    found = (ds.get(PROCEDURE_STEP_STATE) or {}).get("Value") or []
    state = found[0].strip() if found and isinstance(found[0], str) else ""
    if state not in REQUESTABLE_STATES:
        raise BadRequest("Procedure Step State (0074,1000) must be IN PROGRESS, COMPLETED or CANCELED"
                         + (f", not {state!r}" if state else ""))
    return ds


def uid_value(ds: JsonDataset, tag: str) -> str | None:
    found = (ds.get(tag) or {}).get("Value") or []
    return found[0].strip() if found and isinstance(found[0], str) and found[0].strip() else None
