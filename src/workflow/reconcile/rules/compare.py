"""Reconciliation as pure logic: what we expect an archive to hold (from IANs) against what it says it
holds, as a merge-join over two streams sorted by `Holding.key` (Study, Series, SOP Instance UID).

Memory is O(1) whatever the size: nothing is collected, findings are yielded as they are found.
Producers must sort in code-point order (Python's `str` order): our UID columns do on both backends
(COLLATE "C" on PostgreSQL, whose database default may ignore the dots of a UID). An input out of order raises
`UnsortedInput` instead of producing wrong findings.

Use either the whole-stream `Comparer.compare`, or its equal over both sides grouped by study as
plain tuples, `Comparer.compare_studies` (inventory path: a million instances, most of them matching),
or, study by study, `pair_studies` + `Comparer.compare_study` / `unexpected_study` / `compare_counts`
(query path: one C-FIND per study, a study that could not be read passed as `Unreadable`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from workflow.reconcile.rules.holdings import AVAILABILITIES, Holding, HoldingRow, StudyCount, holding_of


class Reason(StrEnum):
    MISSING_IN_ARCHIVE = "MISSING_IN_ARCHIVE"
    UNEXPECTED_IN_ARCHIVE = "UNEXPECTED_IN_ARCHIVE"
    AVAILABILITY_MISMATCH = "AVAILABILITY_MISMATCH"
    LOCATION_MISMATCH = "LOCATION_MISMATCH"
    COUNT_MISMATCH = "COUNT_MISMATCH"
    ARCHIVE_ERROR = "ARCHIVE_ERROR"


# One line each, quoted by the conformance statement and the reports.
MEANING: dict[Reason, str] = {
    Reason.MISSING_IN_ARCHIVE: "An IAN announced the instance, but the archive does not hold it.",
    Reason.UNEXPECTED_IN_ARCHIVE: "The archive holds the instance (or study), but no IAN announced it.",
    Reason.AVAILABILITY_MISMATCH: "The archive reports another Instance Availability than the IANs did, "
                                  "or marks the instance Removed from Operational Use.",
    Reason.LOCATION_MISMATCH: "The archive reports another Retrieve AE Title (or Retrieve URL) than the IANs did.",
    Reason.COUNT_MISMATCH: "The archive's number of series or instances of a study (or of a series) differs "
                           "from the number the IANs announced.",
    Reason.ARCHIVE_ERROR: "The archive could not be asked about the study; its instances were not checked.",
}


@dataclass(frozen=True, slots=True)
class Discrepancy:
    reason: Reason
    study_uid: str
    series_uid: str | None  # None for a study-level finding
    sop_uid: str | None     # None for a study- or series-level finding
    detail: str
    expected: str | None = None
    actual: str | None = None


@dataclass(frozen=True, slots=True)
class Expected:
    holding: Holding
    # False: first notified after the run's cut-off. Such an instance yields no finding of any kind
    # (an archive query races with IANs in flight) and is counted as skipped.
    settled: bool = True


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Stands in for a study's actual holdings when the archive could not be asked about it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Rules:
    """What an instance held on both sides is checked for (filled from policy later)."""

    check_availability: bool = True  # includes Removed from Operational Use
    check_location: bool = True


class UnsortedInput(ValueError):
    """A stream is not in key order (or an expected key repeats, or an item is outside its study)."""


TOTALS = ("expected_checked", "actual_seen", "matched", "skipped", "unchecked", "duplicates_merged",
          "studies_counted")


@dataclass
class Tally:
    """Counts of one run: findings by reason, and totals.

    expected_checked: settled expected instances compared with the archive (matched + with findings)
    actual_seen: distinct instances the archive reported (duplicates merged)
    matched: settled expected instances held by the archive with no finding
    skipped: expected instances notified after the cut-off (not checked)
    unchecked: settled expected instances of studies the archive could not be read for
    duplicates_merged: archive records merged into an earlier record of the same key
    studies_counted: studies compared by counts only (the query path's short-cut)
    """

    by_reason: Counter = field(default_factory=Counter)
    expected_checked: int = 0
    actual_seen: int = 0
    matched: int = 0
    skipped: int = 0
    unchecked: int = 0
    duplicates_merged: int = 0
    studies_counted: int = 0

    def count(self, finding: Discrepancy) -> Discrepancy:
        self.by_reason[finding.reason] += 1
        return finding

    def as_dict(self) -> dict:
        """Plain data for the run's `counts`: every reason code present, 0 when none."""
        return {"by_reason": {r.value: self.by_reason.get(r, 0) for r in Reason},
                "totals": {name: getattr(self, name) for name in TOTALS}}


# --- merging duplicate archive records --------------------------------------------------------------

def availability_rank(value: str) -> int:
    """0 is best (ONLINE); unknown values rank after UNAVAILABLE; "" (not said) ranks last."""
    if not value:
        return len(AVAILABILITIES) + 1
    return AVAILABILITIES.index(value) if value in AVAILABILITIES else len(AVAILABILITIES)


def split_ae(value: str) -> list[str]:
    """Retrieve AE Title is multi-valued (backslash-separated); blanks are insignificant."""
    return [v.strip() for v in value.split("\\") if v.strip()]


def merge_holdings(first: Holding, later: Holding) -> Holding:
    """One instance reported twice by an archive (e.g. its study in two inventory records), as one.

    The instance is as available as its best copy; it is removed if any record says so (a claim an
    auditor must see); its Retrieve AE Titles are the union; other fields: the later non-empty value.
    """
    availability = min((first.availability, later.availability), key=availability_rank)
    aes = sorted(set(split_ae(first.retrieve_ae)) | set(split_ae(later.retrieve_ae)))
    return Holding(first.study_uid, first.series_uid, first.sop_uid,
                   sop_class_uid=later.sop_class_uid or first.sop_class_uid,
                   availability=availability,
                   retrieve_ae="\\".join(aes),
                   retrieve_url=later.retrieve_url or first.retrieve_url,
                   removed=first.removed or later.removed)


# --- the checks on one instance held on both sides --------------------------------------------------

def check_instance(expected: Holding, actual: Holding, rules: Rules = Rules()) -> list[Discrepancy]:
    """Findings for an instance both sides know; empty when it matches."""
    if (not actual.removed and actual.availability == expected.availability
            and actual.retrieve_ae == expected.retrieve_ae and actual.retrieve_url == expected.retrieve_url):
        return []  # the common case, decided without the rules below
    found: list[Discrepancy] = []
    ids = (expected.study_uid, expected.series_uid, expected.sop_uid)
    if rules.check_availability:
        if actual.removed:
            # Only a finding when we believed it usable: an IAN saying UNAVAILABLE agrees with removal.
            if expected.availability != "UNAVAILABLE":
                found.append(Discrepancy(
                    Reason.AVAILABILITY_MISMATCH, *ids,
                    f"archive marks the instance Removed from Operational Use; IANs said "
                    f"{expected.availability or 'nothing about availability'}",
                    expected=expected.availability or None, actual="REMOVED"))
        elif actual.availability and expected.availability and actual.availability != expected.availability:
            found.append(Discrepancy(
                Reason.AVAILABILITY_MISMATCH, *ids,
                f"IANs said {expected.availability}, archive says {actual.availability}",
                expected=expected.availability, actual=actual.availability))
    if rules.check_location:
        parts, exp_vals, act_vals = [], [], []
        exp_aes, act_aes = split_ae(expected.retrieve_ae), split_ae(actual.retrieve_ae)
        # Both must say; any common AE is agreement (the archive may list several for one instance).
        if exp_aes and act_aes and not set(exp_aes) & set(act_aes):
            parts.append(f"Retrieve AE Title: IANs said {expected.retrieve_ae}, archive says {actual.retrieve_ae}")
            exp_vals.append(f"ae={expected.retrieve_ae}")
            act_vals.append(f"ae={actual.retrieve_ae}")
        exp_url, act_url = expected.retrieve_url.strip(), actual.retrieve_url.strip()
        if exp_url and act_url and exp_url != act_url:
            parts.append(f"Retrieve URL: IANs said {exp_url}, archive says {act_url}")
            exp_vals.append(f"url={exp_url}")
            act_vals.append(f"url={act_url}")
        if parts:
            found.append(Discrepancy(Reason.LOCATION_MISMATCH, *ids, "; ".join(parts),
                                     expected=" ".join(exp_vals), actual=" ".join(act_vals)))
    return found


def compare_counts(expected: StudyCount, actual: StudyCount) -> list[Discrepancy]:
    """COUNT_MISMATCH findings for one study (the query path's opt-in short-cut): study level when both
    sides know a count, series level when both sides list series (a series absent on one side
    counts 0 there). Empty when the counts agree."""
    if expected.study_uid != actual.study_uid:
        raise ValueError(f"counts of different studies: {expected.study_uid} and {actual.study_uid}")
    study = expected.study_uid
    found: list[Discrepancy] = []
    for what, exp, act in (("instances", expected.instance_count, actual.instance_count),
                           ("series", expected.series_count, actual.series_count)):
        if exp is not None and act is not None and exp != act:
            found.append(Discrepancy(Reason.COUNT_MISMATCH, study, None, None,
                                     f"study {what}: IANs announced {exp}, archive holds {act}",
                                     expected=str(exp), actual=str(act)))
    if expected.series and actual.series:
        for series in sorted(expected.series.keys() | actual.series.keys()):
            exp, act = expected.series.get(series, 0), actual.series.get(series, 0)
            if exp != act:
                found.append(Discrepancy(Reason.COUNT_MISMATCH, study, series, None,
                                         f"series instances: IANs announced {exp}, archive holds {act}",
                                         expected=str(exp), actual=str(act)))
    return found


# --- ordered streams ---------------------------------------------------------------------------------

T = TypeVar("T")


class _Ordered(Generic[T]):
    """An iterator that checks its items arrive in key order (strict: no key twice), and, when given a
    study, that every item belongs to it. `peek` looks at the next item without taking it."""

    __slots__ = ("_items", "_key", "_name", "_strict", "_study", "_study_of", "_head", "_last")

    def __init__(self, items: Iterable[T], key: Callable[[T], tuple], name: str, strict: bool,
                 study: str | None = None, study_of: Callable[[T], str] | None = None) -> None:
        self._items = iter(items)
        self._key, self._name, self._strict = key, name, strict
        self._study, self._study_of = study, study_of
        self._head: T | None = None
        self._last: tuple | None = None

    def peek(self) -> T | None:
        if self._head is None:
            self._head = next(self._items, None)
        return self._head

    def pop(self) -> T | None:
        item = self._head
        if item is None:
            item = next(self._items, None)
            if item is None:
                return None
        else:
            self._head = None
        key = self._key(item)
        last = self._last
        if last is not None and (key < last or (key == last and self._strict)):
            raise UnsortedInput(f"{self._name} holdings out of order: {key!r} after {last!r}"
                                if key < last else f"{self._name} holdings repeat key {key!r}")
        if self._study is not None and self._study_of(item) != self._study:
            raise UnsortedInput(f"{self._name} holding of study {self._study_of(item)} "
                                f"given for study {self._study}")
        self._last = key
        return item

    def __iter__(self) -> Iterator[T]:
        while (item := self.pop()) is not None:
            yield item

    def take_study(self, study: str, study_of: Callable[[T], str]) -> Iterator[T]:
        """The next items while they belong to `study`."""
        while (item := self.peek()) is not None and study_of(item) == study:
            yield self.pop()


def _expected_key(e: Expected) -> tuple:
    return e.holding.key


def _expected_study(e: Expected) -> str:
    return e.holding.study_uid


def _holding_key(h: Holding) -> tuple:
    return h.key


def _holding_study(h: Holding) -> str:
    return h.study_uid


@dataclass(frozen=True, slots=True)
class StudyPair:
    """A study in the merged study lists: in our expected set, at the archive, or both."""

    study_uid: str
    expected: bool
    actual: bool


def pair_studies(expected: Iterable[str], actual: Iterable[str]) -> Iterator[StudyPair]:
    """Merge two sorted lists of Study Instance UIDs (duplicates at the archive are merged)."""
    exp = _Ordered(expected, lambda s: (s,), "expected studies", strict=True)
    act = _Ordered(actual, lambda s: (s,), "actual studies", strict=False)
    while True:
        e, a = exp.peek(), act.peek()
        if e is None and a is None:
            return
        study = min(s for s in (e, a) if s is not None)
        in_exp = e == study
        if in_exp:
            exp.pop()
        in_act = False
        while act.peek() == study:
            act.pop()
            in_act = True
        yield StudyPair(study, in_exp, in_act)


# --- the comparer --------------------------------------------------------------------------------------

class Comparer:
    """Runs the comparisons of one reconciliation run and keeps its `tally`. Each method yields (or
    returns) findings; every finding is counted once, as it is produced."""

    def __init__(self, rules: Rules = Rules(), tally: Tally | None = None) -> None:
        self.rules = rules
        self.tally = tally if tally is not None else Tally()

    def compare(self, expected: Iterable[Expected], actual: Iterable[Holding],
                errors: Mapping[str, str] | None = None) -> Iterator[Discrepancy]:
        """The whole merge-join. `errors` maps Study Instance UIDs the archive could not be read for
        to the reason: each such study is one ARCHIVE_ERROR, whatever either side holds for it."""
        exp = _Ordered(expected, _expected_key, "expected", strict=True)
        act = _Ordered(actual, _holding_key, "actual", strict=False)
        err = _Ordered(sorted((errors or {}).items()), lambda kv: (kv[0],), "errors", strict=True)
        while True:
            heads = [s for s in (_study_or_none(exp.peek(), _expected_study),
                                 _study_or_none(act.peek(), _holding_study),
                                 _study_or_none(err.peek(), lambda kv: kv[0])) if s is not None]
            if not heads:
                return
            study = min(heads)
            error = err.pop()[1] if err.peek() is not None and err.peek()[0] == study else None
            expected_of_study = exp.take_study(study, _expected_study)
            if error is None:
                yield from self._join(expected_of_study, act.take_study(study, _holding_study))
            else:
                yield from self._unreadable(study, expected_of_study, error)
                for _ in act.take_study(study, _holding_study):  # what it did list is not trusted
                    pass

    def compare_studies(self, expected: Iterable[tuple[str, list[HoldingRow]]],
                        actual: Iterable[tuple[str, list[HoldingRow]]],
                        errors: Mapping[str, str] | None = None) -> Iterator[Discrepancy]:
        """`compare` over both sides grouped by study: (Study Instance UID, rows) per study, each side in
        strictly increasing study order (else `UnsortedInput`), a study's rows in any order, expected
        keys unique (as the store's primary key makes them; a repeat raises only in a study with
        findings). The findings, their order and the tally are `compare`'s for the same holdings
        (expected rows: their flag is "not settled"; archive rows: "removed", duplicates in the order
        the archive gave them).

        A study whose two sides are equal row for row, none flagged, is all matches, counted without an
        object per instance: that is nearly every study, and why this is fast. Any other study goes
        through the merge-join as Expected and Holding objects.

        Duplicate archive rows are merged before the join and not counted in `duplicates_merged`: the
        Inventory path's spool has always merged them out of the comparer's sight, and its reports keep
        that count at 0 (counting them would change reports; not done here)."""
        exp, act = _Studies(expected, "expected"), _Studies(actual, "actual")
        err = _Ordered(sorted((errors or {}).items()), lambda kv: (kv[0],), "errors", strict=True)
        tally = self.tally
        while True:
            heads = [s for s in (exp.study, act.study, err.peek()[0] if err.peek() is not None else None)
                     if s is not None]
            if not heads:
                return
            study = min(heads)
            exp_rows, act_rows = exp.take(study), act.take(study)
            if err.peek() is not None and err.peek()[0] == study:
                yield from self._unreadable(study, map(_expected_of, exp_rows), err.pop()[1])
                continue  # what the archive did list for it is not trusted
            exp_rows.sort(key=_ROW_KEY)
            act_rows.sort(key=_ROW_KEY)  # stable: duplicates stay in the archive's order
            if exp_rows == act_rows and not any(map(_ROW_FLAG, act_rows)):
                n = len(act_rows)  # expected keys are unique, so equal rows are n distinct matches
                tally.expected_checked += n
                tally.actual_seen += n
                tally.matched += n
                continue
            yield from self._join(_Ordered(map(_expected_of, exp_rows), _expected_key, "expected", strict=True),
                                  merge_runs(map(holding_of, act_rows)))

    def compare_study(self, study_uid: str, expected: Iterable[Expected],
                      actual: Iterable[Holding] | Unreadable) -> Iterator[Discrepancy]:
        """One study: both sides sorted by key and of this study only (else `UnsortedInput`)."""
        exp = _Ordered(expected, _expected_key, "expected", strict=True,
                       study=study_uid, study_of=_expected_study)
        if isinstance(actual, Unreadable):
            yield from self._unreadable(study_uid, exp, actual.reason)
        else:
            yield from self._join(exp, _Ordered(actual, _holding_key, "actual", strict=False,
                                                study=study_uid, study_of=_holding_study))

    def _join(self, expected: Iterable[Expected], actual: Iterable[Holding]) -> Iterator[Discrepancy]:
        """The merge-join proper, over streams already checked for order."""
        exp, act = iter(expected), self._merge_duplicates(actual)
        e, a = next(exp, None), next(act, None)
        e_key = e.holding.key if e is not None else None
        a_key = a.key if a is not None else None
        while e is not None or a is not None:
            if a is None or (e is not None and e_key < a_key):
                yield from self._expected_only(e)
                e = next(exp, None)
                e_key = e.holding.key if e is not None else None
            elif e is None or a_key < e_key:
                yield from self._actual_only(a)
                a = next(act, None)
                a_key = a.key if a is not None else None
            else:
                yield from self._both(e, a)
                e, a = next(exp, None), next(act, None)
                e_key = e.holding.key if e is not None else None
                a_key = a.key if a is not None else None

    def unexpected_study(self, study_uid: str, count: StudyCount | None = None) -> Discrepancy:
        """A study the archive holds that no IAN named, reported once at study level (the query path,
        which need not list its instances)."""
        held = count.instance_count if count is not None else None
        detail = "archive holds the study; no IAN named it"
        if held is not None:
            detail += f" ({held} instances)"
        return self.tally.count(Discrepancy(Reason.UNEXPECTED_IN_ARCHIVE, study_uid, None, None, detail,
                                            actual=None if held is None else str(held)))

    def compare_counts(self, expected: StudyCount, actual: StudyCount) -> list[Discrepancy]:
        self.tally.studies_counted += 1
        return [self.tally.count(d) for d in compare_counts(expected, actual)]

    # -- the cases --

    def _expected_only(self, e: Expected) -> list[Discrepancy]:
        if not e.settled:
            self.tally.skipped += 1
            return []
        self.tally.expected_checked += 1
        h = e.holding
        return [self.tally.count(Discrepancy(Reason.MISSING_IN_ARCHIVE, h.study_uid, h.series_uid, h.sop_uid,
                                             "announced by IAN, not held by the archive",
                                             expected=h.availability or None))]

    def _actual_only(self, a: Holding) -> list[Discrepancy]:
        self.tally.actual_seen += 1
        return [self.tally.count(Discrepancy(Reason.UNEXPECTED_IN_ARCHIVE, a.study_uid, a.series_uid, a.sop_uid,
                                             "held by the archive, announced by no IAN",
                                             actual=a.availability or None))]

    def _both(self, e: Expected, a: Holding) -> list[Discrepancy]:
        self.tally.actual_seen += 1
        if not e.settled:
            self.tally.skipped += 1
            return []
        self.tally.expected_checked += 1
        found = check_instance(e.holding, a, self.rules)
        if not found:
            self.tally.matched += 1
        return [self.tally.count(d) for d in found]

    def _unreadable(self, study_uid: str, exp: Iterable[Expected], reason: str) -> Iterator[Discrepancy]:
        not_checked = 0
        for e in exp:
            if e.settled:
                not_checked += 1
            else:
                self.tally.skipped += 1
        self.tally.unchecked += not_checked
        yield self.tally.count(Discrepancy(
            Reason.ARCHIVE_ERROR, study_uid, None, None,
            f"the archive could not be read for this study: {reason}; "
            f"{not_checked} expected instance(s) not checked",
            expected=str(not_checked), actual=reason))

    def _merge_duplicates(self, holdings: Iterable[Holding]) -> Iterator[Holding]:
        def counted() -> None:
            self.tally.duplicates_merged += 1
        return merge_runs(holdings, counted)


def merge_runs(holdings: Iterable[Holding], on_merge: Callable[[], None] = lambda: None) -> Iterator[Holding]:
    """Holdings sorted by key, with each run of one key merged into one record (merge_holdings)."""
    prev: Holding | None = None
    for h in holdings:
        if prev is not None and h.key == prev.key:
            prev = merge_holdings(prev, h)
            on_merge()
            continue
        if prev is not None:
            yield prev
        prev = h
    if prev is not None:
        yield prev


_ROW_KEY = itemgetter(1, 2)  # (series, SOP instance) within a study
_ROW_FLAG = itemgetter(6)  # expected: not settled; archive: removed


def _expected_of(row: HoldingRow) -> Expected:
    """An expected HoldingRow (its flag: not settled) as an Expected."""
    return Expected(Holding(row[0], row[1], row[2], "", row[3], row[4], row[5]), not row[6])


class _Studies:
    """(study, rows) pairs in strictly increasing study order: `study` is the next one's UID (None at
    the end), `take(study)` its rows if it is that study, else []."""

    __slots__ = ("_items", "_name", "study", "_rows")

    def __init__(self, items: Iterable[tuple[str, list]], name: str) -> None:
        self._items, self._name = iter(items), name
        self.study: str | None = None
        self._rows: list = []
        self._next()

    def _next(self) -> None:
        last = self.study
        item = next(self._items, None)
        if item is None:
            self.study, self._rows = None, []
            return
        self.study, self._rows = item
        if last is not None and self.study <= last:
            raise UnsortedInput(f"{self._name} studies out of order: {self.study!r} after {last!r}"
                                if self.study < last else f"{self._name} study {self.study!r} given twice")

    def take(self, study: str) -> list:
        if self.study != study:
            return []
        rows = self._rows
        self._next()
        return rows


def _study_or_none(item, study_of) -> str | None:
    return None if item is None else study_of(item)


def compare(expected: Iterable[Expected], actual: Iterable[Holding], rules: Rules = Rules(), *,
            errors: Mapping[str, str] | None = None, tally: Tally | None = None) -> Iterator[Discrepancy]:
    """`Comparer(rules, tally).compare(expected, actual, errors)`: pass a Tally to get the counts."""
    return Comparer(rules, tally).compare(expected, actual, errors)
