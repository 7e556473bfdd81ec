"""C-FIND matching of the UPS worklist (PS3.4 CC.2.8, matching rules of PS3.4 C.2.2.2), as data.

`MATCHING_KEYS` lists every matching key this SCP supports: tag, keyword, VR, key type (U/R/O of
Table CC.2.5-3), the matching kinds its VR allows and where its values are stored, so the conformance
statement can print it and the indexer (`workflow.ups.index`) and the SQL builder
(`workflow.ups.query`) follow the same table. `parse_query` turns a C-FIND Identifier (DICOM JSON
model, PS3.18 F.2) into a `Query`: its conditions, its return keys and the keys it ignores.

Pure: no database here. Decisions the standard leaves to the SCP (to be repeated in the conformance
statement):

* Person names (PN) match case-insensitively (C.2.2.2.1.1 allows it), on the Alphabetic component group
  only; the database folds case (`lower()`): ASCII only on SQLite, Unicode per locale on PostgreSQL.
  A PN key with only Ideographic/Phonetic groups is not used for matching (it is listed in `ignored`).
  Every other VR matches case-sensitively, as C.2.2.2.1 and C.2.2.2.4 require.
* Leading and trailing spaces (and NUL padding of UIDs) are not significant: they are stripped from key
  values and from stored values; narrative VRs (ST, LT, UT, UC) lose trailing spaces only.
* Wild card matching is offered for AE, CS, LO, LT, PN, SH, ST, UC, UR, UT (C.2.2.2.4), including the CS
  keys whose Table CC.2.5-3 remark says "Single Value Matching" (a superset, harmless). A value made of
  `*` only is Universal Matching (C.2.2.2.4 note 1).
* Dates and times are matched by meaning (C.2.2.2.1.3): values are normalised to fixed-width text
  (`normalize_dt`, `normalize_da`, `normalize_tm`). A value that omits trailing components stands for the
  whole span it names: as a lower bound it is padded with the lowest values, as an upper bound with the
  highest, so `-20261123` ends at 20261123235959.999999. Single Value Matching of DA/DT/TM is the range
  with both bounds equal (as note 2 of C.2.2.2.1.3 suggests), so `20261123` as a single DT value matches
  every moment of that day.
* UTC offsets (`&ZZXX` of DT) are dropped, NOT converted: stored values and keys compare as written
  (wall-clock) time. This departs from C.2.2.2.5.3 d; Timezone Offset From UTC (0008,0201) in the
  Identifier is recorded but not applied (timezone query adjustment is not negotiated). Leap seconds
  (`60`) are accepted but sort after the upper bound of their minute.
* Zero-length stored values: a workitem whose stored value is empty or absent does NOT match a
  non-universal key. C.2.2.1.2 says such a Required Key matches everything in the Query/Retrieve models;
  CC.2.8 refers only to the matching rules of C.2.2.2, and for a worklist "unassigned" must not match a
  query for one station's work.
* Sequence Matching looks at EVERY item of the stored sequence: a workitem matches when one item matches
  all non-universal item keys (C.2.2.2.6); the key itself must have exactly one item. A sequence key
  with no item, an empty item, or only universal item keys is universal.
* Unsupported or unknown keys (not in `MATCHING_KEYS`, e.g. Issuer of Patient ID) with a value are
  treated like an Optional Key not supported for matching (C.2.2.1.3): the value is ignored, the key is a
  return key (returned empty if the SCP has no value). They are listed in `Query.ignored`.
* Transaction UID (0008,1195) "cannot be queried": it is neither matched nor returned (in `ignored`).
  Specific Character Set (0008,0005) and Timezone Offset From UTC (0008,0201) are never matched.
* More than one value is accepted only as a List of UIDs (C.2.2.2.2, VR UI); `A\\B` on another VR is
  rejected rather than read as "A or B" (the standard defines no such matching).
* Invalid key values (malformed or reversed date/time range, a bad UID, a sequence key with several
  items, several values outside a UID list, a value of the wrong shape) raise `QueryRejected` with status
  A900 "Identifier does not match SOP Class" (PS3.4 Table CC.2.8-2, PS3.7 C.4.1.1.4), whose related
  fields are Offending Element (0000,0901) and Error Comment (0000,0902): the key is named. Cxxx "Unable
  to process" is left for failures of the SCP itself (database errors), not for a bad Identifier.
* CC.2.8.3.1 "If there are no matching keys, then there are no matches" is read as "no workitem
  matched": an Identifier with universal keys only returns every workitem.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from workflow.kernel.attributes import error_comment, is_uid
from workflow.kernel.statuses import Status
from workflow.ups.rules.state import UPS_PUSH_SOP_CLASS_UID

IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = Status(0xA900, "Failure", "Identifier does not match SOP Class")

# Matching kinds (PS3.4 C.2.2.2).
UNIVERSAL = "universal"
SINGLE = "single"
WILDCARD = "wildcard"
UID_LIST = "uid_list"
RANGE = "range"
SEQUENCE = "sequence"

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})
_TRAILING_ONLY_VRS = frozenset({"ST", "LT", "UT", "UC"})  # leading spaces are significant there

# Where a key's values live (see workflow.ups.tables).
COLUMN = "column"  # a Workitem column
CONSTANT = "constant"  # the same for every workitem (SOP Class UID)
SEQ = "sequence"  # workitem_seq_item rows with sequence_tag = this tag
ITEM = "item"  # an attribute of a SEQ item: rows with key = seq_key
NESTED = "nested"  # a sequence inside a SEQ item: its attributes have dotted keys, value_index = its item
WRAPPER = "wrapper"  # a single-item sequence whose own sequences are indexed as SEQ

SPECIFIC_CHARACTER_SET = "00080005"
TIMEZONE_OFFSET = "00080201"
TRANSACTION_UID = "00081195"


def kinds_for_vr(vr: str) -> frozenset[str]:
    """The matching kinds C.2.2.2 defines for a VR (universal is always allowed)."""
    if vr == "SQ":
        return frozenset({UNIVERSAL, SEQUENCE})
    if vr == "UI":
        return frozenset({UNIVERSAL, SINGLE, UID_LIST})
    if vr in DATE_TIME_VRS:
        return frozenset({UNIVERSAL, SINGLE, RANGE})
    if vr in WILDCARD_VRS:
        return frozenset({UNIVERSAL, SINGLE, WILDCARD})
    return frozenset({UNIVERSAL, SINGLE})


@dataclass(frozen=True)
class MatchingKey:
    """One supported matching key. `key_type` is Table CC.2.5-3's Match Key Type (U, R or O)."""

    tag: str
    keyword: str
    vr: str
    key_type: str
    storage: str
    column: str | None = None  # COLUMN
    constant: str | None = None  # CONSTANT
    sequence_tag: str | None = None  # SEQ: own tag; ITEM / NESTED: the enclosing SEQ's tag
    seq_key: str | None = None  # ITEM: workitem_seq_item.key ("00080100" or "00404009.00080100")
    items: tuple["MatchingKey", ...] = ()
    kinds: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", kinds_for_vr(self.vr))

    def item(self, tag: str) -> "MatchingKey | None":
        return next((k for k in self.items if k.tag == tag), None)

    @property
    def where(self) -> str:
        """Where the values are stored, for the conformance statement."""
        if self.storage == COLUMN:
            return f"workitem.{self.column}"
        if self.storage == CONSTANT:
            return f"constant {self.constant}"
        if self.storage == ITEM:
            return f"workitem_seq_item[{self.sequence_tag}].{self.seq_key}"
        if self.storage == SEQ:
            return f"workitem_seq_item[{self.sequence_tag}]"
        if self.storage == NESTED:
            return f"workitem_seq_item[{self.sequence_tag}].{self.tag}.* (value_index = item)"
        return "its item's sequences"


def _col(tag: str, keyword: str, vr: str, key_type: str, column: str) -> MatchingKey:
    return MatchingKey(tag, keyword, vr, key_type, COLUMN, column=column)


def _seq(tag: str, keyword: str, key_type: str, items: tuple[tuple, ...]) -> MatchingKey:
    """A sequence indexed in workitem_seq_item; `items` are (tag, keyword, vr, key_type[, nested items])."""
    return MatchingKey(tag, keyword, "SQ", key_type, SEQ, sequence_tag=tag,
                       items=tuple(_item(tag, spec, "") for spec in items))


def _item(sequence_tag: str, spec: tuple, prefix: str) -> MatchingKey:
    tag, keyword, vr, key_type = spec[:4]
    if vr == "SQ":  # one more level: dotted keys
        nested = tuple(_item(sequence_tag, sub, f"{tag}.") for sub in spec[4])
        return MatchingKey(tag, keyword, "SQ", key_type, NESTED, sequence_tag=sequence_tag, items=nested)
    return MatchingKey(tag, keyword, vr, key_type, ITEM, sequence_tag=sequence_tag, seq_key=prefix + tag)


def _code(required: str = "R", optional: str = "O") -> tuple[tuple, ...]:
    """The Code Sequence Macro items (Table CC.2.5-2a): Code Value and Coding Scheme Designator are R,
    the rest O (all O when the sequence itself is an Optional key)."""
    return (
        ("00080100", "CodeValue", "SH", required),
        ("00080102", "CodingSchemeDesignator", "SH", required),
        ("00080103", "CodingSchemeVersion", "SH", optional),
        ("00080104", "CodeMeaning", "LO", optional),
        ("00080119", "LongCodeValue", "UC", optional),
        ("00080120", "URNCodeValue", "UR", optional),
    )


def _issuer(key_type: str) -> tuple[tuple, ...]:
    return (
        ("00400031", "LocalNamespaceEntityID", "UT", key_type),
        ("00400032", "UniversalEntityID", "UT", key_type),
        ("00400033", "UniversalEntityIDType", "CS", key_type),
    )


def _performers(key_type: str) -> tuple[tuple, ...]:
    return (
        ("00404009", "HumanPerformerCodeSequence", "SQ", key_type, _code(key_type, "O")),
        ("00404037", "HumanPerformerName", "PN", key_type),
        ("00404036", "HumanPerformerOrganization", "LO", key_type),
    )


# PS3.4 Table CC.2.5-3, Match Key Type column (2020 text), restricted to what the store indexes.
MATCHING_KEYS: tuple[MatchingKey, ...] = (
    MatchingKey("00080016", "SOPClassUID", "UI", "O", CONSTANT, constant=UPS_PUSH_SOP_CLASS_UID),
    _col("00080018", "SOPInstanceUID", "UI", "U", "sop_instance_uid"),
    _col("00741200", "ScheduledProcedureStepPriority", "CS", "R", "priority"),
    _col("00404010", "ScheduledProcedureStepModificationDateTime", "DT", "O", "modification_datetime"),
    _col("00741204", "ProcedureStepLabel", "LO", "R", "procedure_step_label"),
    _col("00741202", "WorklistLabel", "LO", "R", "worklist_label"),
    _seq("00404025", "ScheduledStationNameCodeSequence", "R", _code()),
    _seq("00404026", "ScheduledStationClassCodeSequence", "R", _code()),
    _seq("00404027", "ScheduledStationGeographicLocationCodeSequence", "R", _code()),
    _seq("00404034", "ScheduledHumanPerformersSequence", "R", _performers("R")),
    _col("00404005", "ScheduledProcedureStepStartDateTime", "DT", "R", "scheduled_start_datetime"),
    _col("00404011", "ExpectedCompletionDateTime", "DT", "R", "expected_completion_datetime"),
    _col("00404008", "ScheduledProcedureStepExpirationDateTime", "DT", "O", "expiration_datetime"),
    _seq("00404018", "ScheduledWorkitemCodeSequence", "R", _code()),
    _col("00404041", "InputReadinessState", "CS", "R", "input_readiness_state"),
    _col("0020000D", "StudyInstanceUID", "UI", "O", "study_instance_uid"),
    _col("00100010", "PatientName", "PN", "R", "patient_name"),
    _col("00100020", "PatientID", "LO", "R", "patient_id"),
    _col("00100030", "PatientBirthDate", "DA", "R", "patient_birth_date"),
    _col("00100040", "PatientSex", "CS", "R", "patient_sex"),
    _col("00380010", "AdmissionID", "LO", "R", "admission_id"),
    _seq("00380014", "IssuerOfAdmissionIDSequence", "R", _issuer("R")),
    _seq("0040A370", "ReferencedRequestSequence", "R", (
        ("0020000D", "StudyInstanceUID", "UI", "O"),
        ("00080050", "AccessionNumber", "SH", "R"),
        ("00080051", "IssuerOfAccessionNumberSequence", "SQ", "R", _issuer("R")),
        ("00402016", "PlacerOrderNumberImagingServiceRequest", "LO", "O"),
        ("00402017", "FillerOrderNumberImagingServiceRequest", "LO", "O"),
        ("00401001", "RequestedProcedureID", "SH", "R"),
        ("00321060", "RequestedProcedureDescription", "LO", "O"),
        ("00321064", "RequestedProcedureCodeSequence", "SQ", "O", _code("O")),
        ("00321033", "RequestingService", "LO", "R"),
    )),
    _seq("00741224", "ReplacedProcedureStepSequence", "R", (
        ("00081150", "ReferencedSOPClassUID", "UI", "R"),
        ("00081155", "ReferencedSOPInstanceUID", "UI", "R"),
    )),
    _col("00741000", "ProcedureStepState", "CS", "R", "procedure_step_state"),
    # UPS Performed Procedure Sequence has a single item; its Actual Human Performers Sequence is indexed
    # as a sequence of its own (the performers of all items, should there be several).
    MatchingKey("00741216", "UnifiedProcedureStepPerformedProcedureSequence", "SQ", "O", WRAPPER, items=(
        _seq("00404035", "ActualHumanPerformersSequence", "O", _performers("O")),
    )),
)

TOP_LEVEL_KEYS: dict[str, MatchingKey] = {k.tag: k for k in MATCHING_KEYS}


KeyPath = tuple[MatchingKey, ...]


def iter_matching_keys(keys: KeyPath = MATCHING_KEYS,
                       path: KeyPath = ()) -> Iterator[tuple[KeyPath, MatchingKey]]:
    """Every key with its enclosing sequences (outermost first), depth first: for the conformance
    statement, e.g. "ScheduledHumanPerformersSequence > HumanPerformerCodeSequence > CodeValue"."""
    for key in keys:
        yield path, key
        if key.items:
            yield from iter_matching_keys(key.items, path + (key,))


# ---------------------------------------------------------------------------------------------------
# Dates and times


_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_TM_LEGACY_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")  # ACR-NEMA hh:mm:ss.frac
_DA_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_LEGACY_RE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA yyyy.mm.dd


def normalize_dt(value: str, *, upper: bool = False) -> str:
    """DICOM DT text -> `YYYYMMDDHHMMSS.ffffff` (21 characters, sorts as time).

    Omitted trailing components are padded with their lowest value, or with their highest when `upper`
    (the value is the upper bound of a range: `2026` -> 20261231235959.999999). A UTC offset suffix is
    validated and dropped, not converted. Raises ValueError when `value` is not a valid DT."""
    m = _DT_RE.match(value.strip())
    if not m:
        raise ValueError(f"not a DICOM DT: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    if fraction is not None and second is None:
        raise ValueError(f"not a DICOM DT (fraction without seconds): {value!r}")
    if offset is not None and not (int(offset[1:3]) <= 14 and int(offset[3:]) <= 59):
        raise ValueError(f"not a DICOM DT (UTC offset): {value!r}")
    y = int(year)
    mo = _check(month, 1, 12, 12 if upper else 1, value)
    last_day = calendar.monthrange(y, mo)[1] if y >= 1 else 31
    d = _check(day, 1, last_day, last_day if upper else 1, value)
    h = _check(hour, 0, 23, 23 if upper else 0, value)
    mi = _check(minute, 0, 59, 59 if upper else 0, value)
    s = _check(second, 0, 60, 59 if upper else 0, value)
    frac = _fraction(fraction, upper)
    return f"{y:04d}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d}.{frac}"


def normalize_da(value: str, *, upper: bool = False) -> str:
    """DICOM DA text (`YYYYMMDD`, or the ACR-NEMA `YYYY.MM.DD` PS3.5 asks queries to accept) ->
    `YYYYMMDD`. DA has no partial form, so `upper` changes nothing; it exists for symmetry."""
    text = value.strip()
    m = _DA_RE.match(text) or _DA_LEGACY_RE.match(text)
    if not m:
        raise ValueError(f"not a DICOM DA: {value!r}")
    y, mo = int(m.group(1)), _check(m.group(2), 1, 12, 1, value)
    _check(m.group(3), 1, calendar.monthrange(y, mo)[1] if y >= 1 else 31, 1, value)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}"


def normalize_tm(value: str, *, upper: bool = False) -> str:
    """DICOM TM text (`HH[MM[SS[.F{1-6}]]]`, or the ACR-NEMA `HH:MM[:SS[.frac]]`) ->
    `HHMMSS.ffffff`, padded low, or high when `upper`. Raises ValueError when malformed."""
    text = value.strip()
    m = _TM_RE.match(text) or _TM_LEGACY_RE.match(text)
    if not m:
        raise ValueError(f"not a DICOM TM: {value!r}")
    hour, minute, second, fraction = m.groups()
    if fraction is not None and second is None:
        raise ValueError(f"not a DICOM TM (fraction without seconds): {value!r}")
    h = _check(hour, 0, 23, 0, value)
    mi = _check(minute, 0, 59, 59 if upper else 0, value)
    s = _check(second, 0, 60, 59 if upper else 0, value)
    return f"{h:02d}{mi:02d}{s:02d}.{_fraction(fraction, upper)}"


_NORMALIZERS = {"DT": normalize_dt, "DA": normalize_da, "TM": normalize_tm}


def normalize(vr: str, value: str, *, upper: bool = False) -> str:
    """Normalise a DA, DT or TM value (see the functions above)."""
    return _NORMALIZERS[vr](value, upper=upper)


def _check(text: str | None, low: int, high: int, default: int, value: str) -> int:
    if text is None:
        return default
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"out of range component {text!r} in {value!r}")
    return number


def _fraction(fraction: str | None, upper: bool) -> str:
    return (fraction or "").ljust(6, "9" if upper else "0")


# ---------------------------------------------------------------------------------------------------
# The parsed query


@dataclass(frozen=True)
class Condition:
    """One matching key of the Identifier.

    `path`: tags from the top level (`("00404025", "00080100")` for Code Value inside Scheduled Station
    Name Code Sequence). `kind`: universal, single, wildcard, uid_list, range or sequence. `values`:
    the key value(s) as sent, stripped (the pattern for wildcard, the UIDs for uid_list). `bounds`:
    normalised (lower, upper) for DA/DT/TM single and range matching, None for an open end.
    `nested`: for sequence, one condition per item key (universal ones included)."""

    path: tuple[str, ...]
    kind: str
    vr: str
    key: MatchingKey
    values: tuple[str, ...] = ()
    bounds: tuple[str | None, str | None] | None = None
    nested: tuple["Condition", ...] = ()
    case_insensitive: bool = False

    @property
    def tag(self) -> str:
        return self.path[-1]

    @property
    def active_nested(self) -> tuple["Condition", ...]:
        return tuple(c for c in self.nested if c.kind != UNIVERSAL)


@dataclass(frozen=True)
class ReturnKey:
    """A tag to return. For a sequence, `item_keys` lists the item attributes to return, or is None
    when the whole items are asked for (a sequence key with no item or an empty item, C.2.2.2.6)."""

    tag: str
    vr: str
    item_keys: tuple["ReturnKey", ...] | None = None


@dataclass(frozen=True)
class Query:
    conditions: tuple[Condition, ...]  # every supported key of the Identifier, universal ones included
    # Every top-level key of the Identifier except Specific Character Set, Timezone Offset From UTC,
    # group lengths and Transaction UID (the response builder adds Specific Character Set itself).
    return_keys: tuple[ReturnKey, ...]
    ignored: tuple[str, ...] = ()  # dotted tag paths of keys with a value that are not matched
    specific_character_set: tuple[str, ...] = ()
    timezone_offset: str | None = None

    @property
    def active(self) -> tuple[Condition, ...]:
        """The conditions that restrict the result (all but the universal ones)."""
        return tuple(c for c in self.conditions if c.kind != UNIVERSAL)


class QueryRejected(Exception):
    """The Identifier cannot be processed: the status to answer (A900), a short Error Comment
    (0000,0902) and the Offending Element (0000,0901) path, top-level tag first."""

    def __init__(self, comment: str, tags: tuple[str, ...] = (),
                 status: Status = IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS) -> None:
        self.status = status
        self.comment = error_comment(comment)
        self.tags = tags
        super().__init__(self.comment)


_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")


def parse_query(identifier: dict[str, Any]) -> Query:
    """Parse a C-FIND Identifier (DICOM JSON model) into a Query; raise QueryRejected (A900)."""
    if not isinstance(identifier, dict):
        raise QueryRejected("identifier is not a data set")
    conditions: list[Condition] = []
    returns: list[ReturnKey] = []
    ignored: list[str] = []
    charset: tuple[str, ...] = ()
    tz: str | None = None
    for raw_tag, element in identifier.items():
        tag = _tag(raw_tag, ())
        element = _element(element, (tag,))
        if tag == SPECIFIC_CHARACTER_SET:
            charset = tuple(v for v in element.get("Value") or () if isinstance(v, str))
            continue
        if tag == TIMEZONE_OFFSET:
            tz = next((v for v in element.get("Value") or () if isinstance(v, str) and v), None)
            continue
        if tag[4:] == "0000":  # group length: neither matched nor returned
            continue
        if tag == TRANSACTION_UID:
            ignored.append(tag)
            continue
        key = TOP_LEVEL_KEYS.get(tag)
        returns.append(_return_key(tag, element, key))
        if key is None:
            if _has_value(element):
                ignored.append(tag)
            continue
        conditions.append(_condition(key, element, (tag,), ignored))
    return Query(tuple(conditions), tuple(returns), tuple(ignored), charset, tz)


def _tag(raw: Any, path: tuple[str, ...]) -> str:
    if not isinstance(raw, str) or not _TAG_RE.match(raw):
        raise QueryRejected(f"not a tag: {str(raw)[:20]!r}", path)
    return raw.upper()


def _element(element: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if element is None:
        return {}
    if not isinstance(element, dict):
        raise QueryRejected(f"{_where(path)} is not a DICOM JSON element", path)
    return element


def _has_value(element: dict[str, Any]) -> bool:
    for value in element.get("Value") or ():
        if isinstance(value, dict):
            if any(_has_value(_element(v, ())) if isinstance(v, dict) else v not in (None, "")
                   for v in value.values()):
                return True
        elif value not in (None, ""):
            return True
    return False


def _return_key(tag: str, element: dict[str, Any], key: MatchingKey | None) -> ReturnKey:
    vr = key.vr if key is not None else str(element.get("vr") or "UN")
    if vr != "SQ":
        return ReturnKey(tag, vr)
    items = [i for i in element.get("Value") or () if isinstance(i, dict)]
    if not items or not items[0]:
        return ReturnKey(tag, vr, None)
    sub_keys = []
    for sub_tag, sub_element in items[0].items():
        sub_tag = _tag(sub_tag, (tag,))
        sub_key = key.item(sub_tag) if key is not None else None
        sub_keys.append(_return_key(sub_tag, _element(sub_element, (tag, sub_tag)), sub_key))
    return ReturnKey(tag, vr, tuple(sub_keys))


def _condition(key: MatchingKey, element: dict[str, Any], path: tuple[str, ...],
               ignored: list[str]) -> Condition:
    declared = element.get("vr")
    if declared not in (None, "", "UN") and (declared == "SQ") != (key.vr == "SQ"):
        raise QueryRejected(f"{_where(path)} has VR {declared}, expected {key.vr}", path)
    if key.vr == "SQ":
        return _sequence_condition(key, element, path, ignored)
    values = _strings(key, element, path)
    if values is None:  # a PN without an Alphabetic group
        ignored.append(".".join(path))
        return Condition(path, UNIVERSAL, key.vr, key)
    if not values:
        return Condition(path, UNIVERSAL, key.vr, key)
    if key.vr == "UI":
        bad = next((v for v in values if not is_uid(v)), None)
        if bad is not None:
            raise QueryRejected(f"{_where(path)}: invalid UID {bad[:24]!r}", path)
        return Condition(path, SINGLE if len(values) == 1 else UID_LIST, "UI", key, tuple(values))
    if len(values) > 1:
        raise QueryRejected(f"{_where(path)}: several values (only UID lists may)", path)
    value = values[0]
    if key.vr in DATE_TIME_VRS:
        return _date_time_condition(key, value, path)
    case_insensitive = key.vr == "PN"
    if key.vr in WILDCARD_VRS and ("*" in value or "?" in value):
        if set(value) == {"*"}:
            return Condition(path, UNIVERSAL, key.vr, key)
        return Condition(path, WILDCARD, key.vr, key, (value,), case_insensitive=case_insensitive)
    return Condition(path, SINGLE, key.vr, key, (value,), case_insensitive=case_insensitive)


def _sequence_condition(key: MatchingKey, element: dict[str, Any], path: tuple[str, ...],
                        ignored: list[str]) -> Condition:
    items = element.get("Value") or []
    if not isinstance(items, list) or any(not isinstance(i, dict) for i in items):
        raise QueryRejected(f"{_where(path)} is not a sequence of items", path)
    if len(items) > 1:
        raise QueryRejected(f"{_where(path)}: a sequence key has one item, not {len(items)}", path)
    if not items:
        return Condition(path, UNIVERSAL, "SQ", key)
    nested: list[Condition] = []
    for raw_tag, sub_element in items[0].items():
        sub_path = path + (_tag(raw_tag, path),)
        sub_element = _element(sub_element, sub_path)
        sub_key = key.item(sub_path[-1])
        if sub_key is None:
            if _has_value(sub_element):
                ignored.append(".".join(sub_path))
            continue
        nested.append(_condition(sub_key, sub_element, sub_path, ignored))
    kind = SEQUENCE if any(c.kind != UNIVERSAL for c in nested) else UNIVERSAL
    return Condition(path, kind, "SQ", key, nested=tuple(nested))


def _strings(key: MatchingKey, element: dict[str, Any], path: tuple[str, ...]) -> list[str] | None:
    """The non-empty key values, stripped; None for a PN that has no Alphabetic component group."""
    out: list[str] = []
    other_groups = False
    for value in element.get("Value") or ():
        if value is None:
            continue
        if key.vr == "PN" and isinstance(value, dict):
            alphabetic = value.get("Alphabetic")
            if alphabetic in (None, ""):
                other_groups = other_groups or any(value.get(g) for g in ("Ideographic", "Phonetic"))
                continue
            value = alphabetic
        if not isinstance(value, str):
            raise QueryRejected(f"{_where(path)}: value is not text", path)
        for part in value.split("\\"):  # a raw multi-value string
            part = clean_text(key.vr, part)
            if part:
                out.append(part)
    if not out and other_groups:
        return None
    return out


def clean_text(vr: str, value: str) -> str:
    """Drop the padding that is not significant for a VR (shared with the indexer)."""
    if vr in _TRAILING_ONLY_VRS:
        return value.rstrip(" ")
    if vr == "UI":
        return value.strip(" \x00")
    return value.strip(" ")


def _date_time_condition(key: MatchingKey, value: str, path: tuple[str, ...]) -> Condition:
    vr = key.vr
    try:
        if "-" not in value:
            bounds = (normalize(vr, value), normalize(vr, value, upper=True))
            return Condition(path, SINGLE, vr, key, (value,), bounds)
        low, high = _split_range(vr, value)
        lower = normalize(vr, low) if low else None
        upper = normalize(vr, high, upper=True) if high else None
    except ValueError:
        raise QueryRejected(f"{_where(path)}: invalid {vr} value {value[:28]!r}", path) from None
    if lower is None and upper is None:
        raise QueryRejected(f"{_where(path)}: a range needs a bound", path)
    if lower is not None and upper is not None and lower > upper:
        raise QueryRejected(f"{_where(path)}: range {value[:30]!r} is reversed", path)
    return Condition(path, RANGE, vr, key, (value,), (lower, upper))


def _split_range(vr: str, value: str) -> tuple[str, str]:
    """Split `a-b`, `-b` or `a-` into its two parts (stripped). For DT a `-` may also start a UTC
    offset (`20261123100000-0500-20261124`), so every split whose two parts are valid is tried; the
    value is rejected unless exactly one split is valid."""
    positions = [i for i, c in enumerate(value) if c == "-"]
    if vr != "DT" and len(positions) != 1:
        raise ValueError(f"not a {vr} range: {value!r}")
    valid = []
    for i in positions:
        low, high = value[:i].strip(), value[i + 1:].strip()
        if all(not part or _valid(vr, part) for part in (low, high)):
            valid.append((low, high))
    if len(valid) != 1:
        raise ValueError(f"not a {vr} range: {value!r}")
    return valid[0]


def _valid(vr: str, value: str) -> bool:
    try:
        normalize(vr, value)
    except ValueError:
        return False
    return True


def _where(path: tuple[str, ...]) -> str:
    """A short name for a key path (keywords where known)."""
    names = []
    keys = MATCHING_KEYS
    for tag in path:
        key = next((k for k in keys if k.tag == tag), None)
        names.append(key.keyword if key is not None else f"({tag[:4]},{tag[4:]})")
        keys = key.items if key is not None else ()
    return ">".join(names[-2:])
