"""One attribute-rule engine for the data sets services receive: each service supplies its table of the
standard as data (rows of `Attr`: IAN PS3.4 Table R.3.2-1, MPPS Table F.7.2-1, UPS Table CC.2.5-3) and
this module walks a DICOM JSON data set (PS3.18 F.2) against it, as highdicom drives one checker from
tables of the standard.

What a row says, per operation (the SCU side of the table's "SCU/SCP" columns):
  "1", "1C"      present with a value (1C: when `condition` decides, on the data set holding the row, that
                 it applies; a condition the data set cannot decide is not enforced)
  "2", "2C"      present, may be empty. An absent one is the site's choice (`type2_absent`): "accept"
                 takes it as sent empty (noted for the log; `with_absent_type2_empty` stores it so),
                 "refuse" answers 0120 at N-CREATE (0121 inside an N-SET item: N-SET has no 0120)
  "3"            optional
  "-"            the SCP sets it; "lock" the Transaction UID (the state table checks it)
  "empty"        must be sent without a value (absent is accepted too)
  "not allowed"  must not be sent: 0105 No such attribute
At the top level of an N-SET an absent attribute is simply not modified. When a data set breaks several
rules, the answer is the first kind in PRECEDENCE, listing every tag of that kind in the Attribute
Identifier List; Error Comment (64 characters) names the first.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterator, NamedTuple

from workflow.kernel import statuses
from workflow.kernel.json_model import element, first, values
from workflow.kernel.statuses import Status

NOT_ALLOWED = "not allowed"
TYPE2_ABSENT = ("accept", "refuse")


class Op(StrEnum):
    CREATE = "N-CREATE"
    SET = "N-SET"


# --- Value checks ----------------------------------------------------------------------------------------

class Check(NamedTuple):
    describe: str  # for the conformance statement
    ok: Callable[[str], bool]


_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
# PS3.5 Table 6.2-1. DA: YYYYMMDD (no partial form outside a query). TM: HH[MM[SS[.F{1-6}]]], HH 00-23,
# MM 00-59, SS 00-60 (60: a leap second). DT: YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX], the same ranges, a
# day that exists in its month and year (Gregorian leap years), and a UTC offset from -1200 to +1400 whose
# minutes are 00-59 (UTC itself is +0000: -0000 shall not be used). The shape is one regex; the ranges are
# a few integer comparisons on its groups.
_DA_RE = re.compile(r"(\d{4})(\d\d)(\d\d)", re.ASCII)
_TM_RE = re.compile(r"(\d\d)(?:(\d\d)(?:(\d\d)(?:\.\d{1,6})?)?)?", re.ASCII)
_DT_RE = re.compile(r"(\d{4})(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:\.\d{1,6})?)?)?)?)?)?"
                    r"(?:([+-])(\d\d)(\d\d))?", re.ASCII)
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _day_ok(year: str, month: str, day: str) -> bool:
    m, d = int(month), int(day)
    if not (1 <= m <= 12 and 1 <= d <= _MONTH_DAYS[m]):
        return False
    if m == 2 and d == 29:
        y = int(year)
        return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return True


def _time_ok(hour: str | None, minute: str | None, second: str | None) -> bool:
    return ((hour is None or int(hour) <= 23) and (minute is None or int(minute) <= 59)
            and (second is None or int(second) <= 60))


def is_date(value: str) -> bool:
    """A DICOM DA value: YYYYMMDD naming a day that exists."""
    m = _DA_RE.fullmatch(value)
    return m is not None and _day_ok(*m.groups())


def is_time(value: str) -> bool:
    """A DICOM TM value (padding spaces aside): HH[MM[SS[.F{1-6}]]] within the ranges of PS3.5."""
    m = _TM_RE.fullmatch(value.strip())
    return m is not None and _time_ok(*m.groups())


def is_datetime(value: str) -> bool:
    """A DICOM DT value: YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX] within the ranges of PS3.5."""
    m = _DT_RE.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second, sign, zz, xx = m.groups()
    if month is not None and not (_day_ok(year, month, day) if day is not None else 1 <= int(month) <= 12):
        return False
    if hour is not None and not _time_ok(hour, minute, second):
        return False
    if sign is not None:
        offset = int(zz) * 60 + int(xx)
        if int(xx) > 59 or offset > (840 if sign == "+" else 720) or (sign == "-" and not offset):
            return False
    return True


def is_uid(value: str) -> bool:
    return len(value) <= 64 and bool(_UID_RE.match(value))


def is_ae_title(value: str) -> bool:
    return bool(_AE_RE.match(value)) and bool(value.strip())


def one_of(*allowed: str) -> Check:
    terms = frozenset(allowed)
    return Check("one of " + ", ".join(allowed), lambda value: value.strip() in terms)


UID = Check("a valid UID (digits and dots, at most 64 characters)", is_uid)
AE_TITLE = Check("valid AE titles (1-16 characters of the default repertoire, no backslash)", is_ae_title)
DATETIME = Check("a DICOM DateTime (YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX]): a real calendar day, hour 00-23, "
                 "minute 00-59, second 00-60, UTC offset -1200 to +1400", is_datetime)
DATE = Check("a DICOM Date (YYYYMMDD): a real calendar day", is_date)
TIME = Check("a DICOM Time (HH[MM[SS[.FFFFFF]]]): hour 00-23, minute 00-59, second 00-60", is_time)
SHORT = Check("at most 16 characters", lambda v: len(v) <= 16)
URL = Check("an absolute URL or path", lambda v: "://" in v or v.startswith("/"))


def error_comment(text: str) -> str:
    """Error Comment (0000,0902) is LO: at most 64 characters of the default repertoire."""
    text = text.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return text if len(text) <= 64 else text[:61] + "..."


# --- Conditions (decided on the data set holding the row) ---------------------------------------------------

def none_of(*tags: str) -> Callable[[dict], bool]:
    return lambda ds: not any(tag in ds for tag in tags)


def any_value(*tags: str) -> Callable[[dict], bool]:
    return lambda ds: any(first(ds, tag) is not None for tag in tags)


# --- A row of a table --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attr:
    """One attribute of a service's table. The matching and return key columns are the UPS table's."""

    tag: str  # "GGGGEEEE" as in DICOM JSON
    keyword: str
    n_create: str = "3"
    n_set: str = NOT_ALLOWED
    final: str = ""  # the Final State column, in the service's own codes
    items: tuple["Attr", ...] = ()
    check: Check | None = None
    multi: bool = False  # VM 1-n
    max_items: int | None = None
    condition: Callable[[dict], bool] | None = None  # decides 1C/2C/RC
    scp_fills: str = ""  # what the SCP puts in when the SCU leaves it out
    empty_ok: bool = False  # a Final State "value" may be zero items
    match: str = "-"  # matching key type: R, O, U, * (as the enclosing sequence), - (not a key)
    matching: str = ""  # single, single/range, single+wildcard, uid_list, sequence
    return_key: str = "-"
    is_sequence: bool = field(init=False)

    def __post_init__(self) -> None:
        # A plain attribute, not a property: the walk asks once per attribute per item.
        object.__setattr__(self, "is_sequence", bool(self.items) or self.keyword.endswith("Sequence"))

    @property
    def tag_text(self) -> str:
        return f"({self.tag[:4]},{self.tag[4:]})"

    def need(self, op: Op) -> str:
        return self.n_create if op is Op.CREATE else self.n_set

    def applies(self, ds: dict) -> bool:
        """A conditional row's condition holds (decidably) on the data set holding it."""
        return self.condition is not None and self.condition(ds)


# --- Findings -------------------------------------------------------------------------------------------

class Problem(NamedTuple):
    status: Status
    tag: str
    path: str
    text: str


# The order dcm4che's ValidationResult uses.
PRECEDENCE = (statuses.NO_SUCH_ATTRIBUTE, statuses.MISSING_ATTRIBUTE, statuses.MISSING_ATTRIBUTE_VALUE,
              statuses.INVALID_ATTRIBUTE_VALUE)


class Rejected(Exception):
    """A request breaks a rule: the status to answer, the Error Comment, the tags for the Attribute
    Identifier List, and where the first one is."""

    def __init__(self, status: Status, comment: str, tags: tuple[str, ...] = (), path: str = "") -> None:
        super().__init__(comment)
        self.status = status
        self.comment = error_comment(comment)
        self.tags = tags
        self.path = path


def where(path: tuple, keyword: str) -> str:
    """"Seq[0].Keyword" from a path of (sequence keyword, item index) pairs."""
    return "".join(f"{path[i]}[{path[i + 1]}]." for i in range(0, len(path), 2)) + keyword


def _problem(status: Status, rule: Attr, path: tuple, what: str) -> Problem:
    inside = f" in {path[0]}" if path else ""
    return Problem(status, rule.tag, where(path, rule.keyword), f"{rule.keyword} {rule.tag_text} {what}{inside}")


def first_kind(problems: list[Problem]) -> Rejected | None:
    """The rejection the answer reports: the first kind in PRECEDENCE, with all its tags."""
    for status in PRECEDENCE:
        found = [p for p in problems if p.status == status]
        if found:
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            return Rejected(status, found[0].text + more, tuple(dict.fromkeys(p.tag for p in found)), found[0].path)
    return None


# --- The walk -------------------------------------------------------------------------------------------

@dataclass
class _Walk:
    op: Op
    refuse_type2: bool
    notes: list[str]

    def problems(self, ds: dict, rules: tuple[Attr, ...], path: tuple = ()) -> Iterator[Problem]:
        missing = statuses.MISSING_ATTRIBUTE if self.op is Op.CREATE else statuses.MISSING_ATTRIBUTE_VALUE
        for rule in rules:
            need = rule.need(self.op)
            el = ds.get(rule.tag)
            if el is None:
                if self.op is Op.SET and not path:
                    continue  # an N-SET changes only what it carries
                if need == "1" or (need == "1C" and rule.applies(ds)):
                    yield _problem(missing, rule, path, "missing")
                elif (need == "2" or (need == "2C" and rule.applies(ds))) and not rule.scp_fills:
                    if self.refuse_type2:
                        yield _problem(missing, rule, path, "missing (Type 2)")
                    else:
                        self.notes.append(f"{where(path, rule.keyword)} absent (Type 2); treated as empty")
                continue
            if need == NOT_ALLOWED:
                yield _problem(statuses.NO_SUCH_ATTRIBUTE, rule, path, f"not allowed in {self.op.value}")
            elif need == "empty":
                if values(ds, rule.tag):
                    yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "must be empty")
            elif need in ("-", "lock"):
                continue  # the SCP sets it; the state table checks the lock
            elif not isinstance(el, dict):
                yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "is not a DICOM JSON element")
            elif rule.is_sequence:
                yield from self._sequence(ds, rule, need, path)
            else:
                yield from self._value(ds, rule, need, path)

    def _needs_value(self, rule: Attr, need: str, ds: dict, top: bool) -> bool:
        """Type 1, and at N-SET an attribute every instance has (Type 1 at N-CREATE)."""
        if need == "1" or (need == "1C" and rule.applies(ds)):
            return True
        return self.op is Op.SET and top and rule.n_create == "1"

    def _sequence(self, ds: dict, rule: Attr, need: str, path: tuple) -> Iterator[Problem]:
        el = ds[rule.tag]
        found = el.get("Value") or []
        if el.get("vr") != "SQ" or not isinstance(found, list) or not all(isinstance(i, dict) for i in found):
            yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "is not a sequence of items")
            return
        if not found and self._needs_value(rule, need, ds, not path):
            yield _problem(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "has no items")
        if rule.max_items is not None and len(found) > rule.max_items:
            yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path,
                           f"has {len(found)} items, at most {rule.max_items}")
        sound = _sound_item_check(rule.items, self.op)
        for i, item in enumerate(found):
            if not sound(item):
                yield from self.problems(item, rule.items, path + (rule.keyword, i))

    def _value(self, ds: dict, rule: Attr, need: str, path: tuple) -> Iterator[Problem]:
        raw = ds[rule.tag].get("Value") or []
        present = values(ds, rule.tag)
        if not present:
            if self._needs_value(rule, need, ds, not path):
                yield _problem(statuses.MISSING_ATTRIBUTE_VALUE, rule, path, "is empty")
            return
        if len(raw) > 1 and not rule.multi:
            yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, "has more than one value")
        if rule.check is not None:
            for value in present:
                if not isinstance(value, str) or not rule.check.ok(value):
                    yield _problem(statuses.INVALID_ATTRIBUTE_VALUE, rule, path, f"invalid: {str(value)[:16]!r}")


# --- Items the walk would pass, told apart quickly -----------------------------------------------------------
# An IAN lists one item per instance (thousands in one request); walking each through the generators above
# cost ~13 us an item. `_sound_item_check` gives, per row list and operation, a plain loop that answers True
# only for an item the walk would pass without a problem and without a note: every row absent where absence
# is silent, or present with non-blank string values that pass its check. Anything else (a sequence row, an
# empty or unusual value, a conditional or Type 2 absence) answers False and the item is walked as before,
# so the answer, its text and its notes stay the walk's own (tests/kernel/test_sound_items.py).

_SILENT_ABSENCE = frozenset(("3", "-", "lock", NOT_ALLOWED, "empty"))
_SKIPPED = frozenset(("-", "lock"))
_compiled: dict[tuple[int, Op], tuple[tuple[Attr, ...], Callable[[dict], bool]]] = {}


def _sound_item_check(rules: tuple[Attr, ...], op: Op) -> Callable[[dict], bool]:
    key = (id(rules), op)
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = (rules, _compile_sound(rules, op))  # holds `rules`: its id stays its own
    return found[1]


def _compile_sound(rules: tuple[Attr, ...], op: Op) -> Callable[[dict], bool]:
    rows = []
    for rule in rules:
        need = rule.need(op)
        if need in _SKIPPED:
            kind = "skip"
        elif need == NOT_ALLOWED or need == "empty" or rule.is_sequence:
            kind = "walk"  # present: the walk decides
        else:
            kind = "value"
        rows.append((rule.tag, need in _SILENT_ABSENCE, kind, rule.multi, rule.check.ok if rule.check else None))

    def sound(item: dict) -> bool:
        for tag, silent_absence, kind, multi, ok in rows:
            el = item.get(tag)
            if el is None:
                if silent_absence:
                    continue
                return False
            if kind == "skip":
                continue
            if kind == "walk" or not isinstance(el, dict) or el.get("vr") == "SQ":
                return False
            raw = el.get("Value")
            if not isinstance(raw, list) or not raw or (len(raw) > 1 and not multi):
                return False
            for value in raw:
                if not isinstance(value, str) or not value.strip() or (ok is not None and not ok(value)):
                    return False
        return True

    return sound


def find_problems(ds: dict[str, Any], rules: tuple[Attr, ...], op: Op, *, type2_absent: str = "accept",
                  notes: list[str] | None = None) -> list[Problem]:
    """Every rule `ds` breaks for `op`. Absent Type 2 attributes accepted go to `notes`."""
    return list(_Walk(op, type2_absent == "refuse", notes if notes is not None else []).problems(ds, rules))


def check(ds: dict[str, Any], rules: tuple[Attr, ...], op: Op, *, type2_absent: str = "accept") -> list[str]:
    """Raise Rejected for the rule breaks of `ds` that win (PRECEDENCE); else return notes for the log:
    absent Type 2 attributes accepted as empty and, at the top level, absent attributes the SCP fills,
    absent "empty" ones, and absent conditional ones whose condition the data set cannot decide."""
    notes: list[str] = []
    rejected = first_kind(find_problems(ds, rules, op, type2_absent=type2_absent, notes=notes))
    if rejected is not None:
        raise rejected
    if op is Op.CREATE:
        notes += [note for note in map(_absence_note, (r for r in rules if r.tag not in ds)) if note]
    return notes


def _absence_note(rule: Attr) -> str:
    if rule.scp_fills:
        return f"{rule.keyword} absent; the SCP fills in {rule.scp_fills}"
    if rule.n_create == "empty":
        return f"{rule.keyword} absent; treated as empty"
    if rule.n_create in ("1C", "2C") and rule.condition is None:
        return f"{rule.keyword} absent (Type {rule.n_create}; its condition is not checked)"
    return ""


def with_absent_type2_empty(ds: dict[str, Any], rules: tuple[Attr, ...]) -> dict[str, Any]:
    """An accepted N-CREATE data set as stored: each absent Type 2 attribute (at any depth, where its
    condition holds) present and empty, so a later read returns it as the standard's Type 2 promises."""
    out = copy.deepcopy(ds)
    _fill(out, rules)
    return out


def _fill(ds: dict, rules: tuple[Attr, ...]) -> None:
    for rule in rules:
        if rule.tag not in ds:
            if (rule.n_create == "2" or (rule.n_create == "2C" and rule.applies(ds))) and not rule.scp_fills:
                ds[rule.tag] = element(rule.keyword)[1]
        elif rule.items:
            for item in ds[rule.tag].get("Value") or ():
                if isinstance(item, dict):
                    _fill(item, rule.items)


def unmet(ds: dict, rules: tuple[Attr, ...], required: Callable[[Attr, dict], bool],
          path: tuple = ()) -> Iterator[tuple[str, Attr]]:
    """The rows `required(rule, holder)` demands that `ds` does not meet (a value, or for `empty_ok` rows
    the element), nested ones included, as ("Seq[0].Keyword", rule): Final State requirements."""
    for rule in rules:
        met = rule.tag in ds if rule.empty_ok else first(ds, rule.tag) is not None
        if required(rule, ds) and not met:
            yield where(path, rule.keyword), rule
            continue
        if rule.items:
            for i, item in enumerate(i for i in values(ds, rule.tag) if isinstance(i, dict)):
                yield from unmet(item, rule.items, required, path + (rule.keyword, i))


# --- What the conformance statement says of the engine ---------------------------------------------------

def status_conditions(rules: tuple[Attr, ...], ops: tuple[Op, ...]) -> tuple[tuple[Status, str], ...]:
    """The statuses this engine answers for `rules` and `ops`, and when: a service's status table starts
    with these rows, so the statement and the checks come from the same table."""
    codes = {rule.need(op) for rule in _rows(rules) for op in ops}
    rows = []
    if NOT_ALLOWED in codes:
        rows.append((statuses.NO_SUCH_ATTRIBUTE, "An attribute the table does not allow in "
                     + " or ".join(op.value for op in ops) + "."))
    rows.append((statuses.MISSING_ATTRIBUTE,
                 "A Type 1 attribute (or a 1C whose condition the data set decides) is absent"
                 + ("" if Op.CREATE not in ops else "; with `type2_absent = \"refuse\"` also a Type 2 one")
                 + (" (N-SET has no 0120: what is missing inside a replaced item is 0121)" if Op.SET in ops else "")
                 + ". The Attribute Identifier List (0000,1005) names every one."))
    rows.append((statuses.MISSING_ATTRIBUTE_VALUE,
                 "A Type 1 attribute is empty (a Type 1 sequence without items)"
                 + (", or emptied by an N-SET" if Op.SET in ops else "")
                 + ". The Attribute Identifier List names every one."))
    rows.append((statuses.INVALID_ATTRIBUTE_VALUE,
                 "A value breaks its rule: a malformed UID or AE title, a date, time or date-time that is "
                 "malformed or names no real moment (PS3.5 Table 6.2-1: month, day of that month and year, "
                 "hour, minute, second up to 60, UTC offset -1200 to +1400), a term outside its "
                 "enumerated values, more values than the VM allows, an element that is not a sequence where "
                 "one must be, more items than allowed" + (", or a value where the table says \"empty\""
                                                           if "empty" in codes else "") + "."))
    return tuple(rows)


def _rows(rules: tuple[Attr, ...]) -> Iterator[Attr]:
    for rule in rules:
        yield rule
        yield from _rows(rule.items)


def absence_rules(type2_absent: str) -> str:
    """One sentence on absent attributes for the statement."""
    if type2_absent == "refuse":
        return "An absent Type 2 attribute is refused (0120, `type2_absent = \"refuse\"`)."
    return ("An absent Type 2 attribute is accepted as if sent empty, stored empty and logged "
            "(`type2_absent = \"accept\"`, the default; \"refuse\" answers 0120).")
