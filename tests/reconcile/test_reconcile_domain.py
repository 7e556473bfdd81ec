"""The reconciliation merge-join: each reason code, ordering errors, duplicates, the cut-off, unreadable
studies, and (property-based) agreement with a naive set-based comparison; the study-grouped comparison
of plain rows (the Inventory path's) gives what the merge-join gives, finding for finding and count for
count."""

from __future__ import annotations

import random
from collections import defaultdict
from functools import reduce
from itertools import groupby

import pytest
from hypothesis import given, settings, strategies as st

from workflow.reconcile.rules.holdings import Holding, StudyCount
from workflow.reconcile.rules.compare import (MEANING, Comparer, Discrepancy, Expected, Reason, Rules, Tally, Unreadable,
                                       UnsortedInput, check_instance, compare, compare_counts, merge_holdings,
                                       merge_runs, pair_studies)


def h(study="1.1", series="1", sop="1", **kw) -> Holding:
    return Holding(study, series, sop, **kw)


def ex(holding: Holding, settled: bool = True) -> Expected:
    return Expected(holding, settled)


def run(expected, actual, rules=Rules(), errors=None):
    tally = Tally()
    return list(compare(expected, actual, rules, errors=errors, tally=tally)), tally


def reasons(findings):
    return [f.reason for f in findings]


def test_every_reason_has_a_meaning():
    assert set(MEANING) == set(Reason)
    assert set(Tally().as_dict()["by_reason"]) == {r.value for r in Reason}


def test_identical_sides_match():
    holdings = [h(sop=str(i), availability="ONLINE", retrieve_ae="ARCH") for i in range(1, 6)]
    found, tally = run([ex(x) for x in holdings], holdings)
    assert found == []
    assert (tally.expected_checked, tally.actual_seen, tally.matched, tally.skipped) == (5, 5, 5, 0)


def test_missing_and_unexpected():
    found, tally = run([ex(h(sop="1")), ex(h(sop="2"))], [h(sop="2"), h(sop="3")])
    assert [(f.reason, f.sop_uid) for f in found] == [(Reason.MISSING_IN_ARCHIVE, "1"),
                                                      (Reason.UNEXPECTED_IN_ARCHIVE, "3")]
    assert tally.by_reason == {Reason.MISSING_IN_ARCHIVE: 1, Reason.UNEXPECTED_IN_ARCHIVE: 1}
    assert (tally.expected_checked, tally.actual_seen, tally.matched) == (2, 2, 1)


def test_availability_mismatch_only_when_the_archive_says():
    found, _ = run([ex(h(availability="ONLINE"))], [h(availability="NEARLINE")])
    assert reasons(found) == [Reason.AVAILABILITY_MISMATCH]
    assert (found[0].expected, found[0].actual) == ("ONLINE", "NEARLINE")
    assert run([ex(h(availability="ONLINE"))], [h(availability="")])[0] == []  # archive does not say
    assert run([ex(h(availability="ONLINE"))], [h(availability="NEARLINE")],
               Rules(check_availability=False))[0] == []


def test_removed_from_operational_use():
    found, _ = run([ex(h(availability="ONLINE"))], [h(availability="ONLINE", removed=True)])
    assert reasons(found) == [Reason.AVAILABILITY_MISMATCH]
    assert "Removed from Operational Use" in found[0].detail and found[0].actual == "REMOVED"
    # An IAN that said UNAVAILABLE agrees with the removal.
    assert run([ex(h(availability="UNAVAILABLE"))], [h(removed=True)])[0] == []


def test_location_mismatch():
    found, _ = run([ex(h(retrieve_ae="ARCH"))], [h(retrieve_ae="OTHER")])
    assert reasons(found) == [Reason.LOCATION_MISMATCH] and "OTHER" in found[0].detail
    assert run([ex(h(retrieve_ae="ARCH"))], [h(retrieve_ae="PACS\\ARCH")])[0] == []  # among several
    assert run([ex(h(retrieve_ae="ARCH"))], [h(retrieve_ae="")])[0] == []            # archive does not say
    found, _ = run([ex(h(retrieve_ae="ARCH", retrieve_url="http://a/1"))],
                   [h(retrieve_ae="ARCH", retrieve_url="http://b/1")])
    assert reasons(found) == [Reason.LOCATION_MISMATCH] and found[0].actual == "url=http://b/1"
    assert run([ex(h(retrieve_url="http://a/1"))], [h(retrieve_url="")])[0] == []
    assert run([ex(h(retrieve_ae="A"))], [h(retrieve_ae="B")], Rules(check_location=False))[0] == []


def test_one_instance_can_have_two_findings():
    found = check_instance(h(availability="ONLINE", retrieve_ae="A"), h(availability="OFFLINE", retrieve_ae="B"))
    assert reasons(found) == [Reason.AVAILABILITY_MISMATCH, Reason.LOCATION_MISMATCH]


def test_count_mismatch_at_study_and_series_level():
    expected = StudyCount("1.1", series_count=2, instance_count=5, series={"1": 3, "2": 2})
    actual = StudyCount("1.1", series_count=3, instance_count=6, series={"1": 3, "2": 1, "3": 2})
    found = compare_counts(expected, actual)
    assert all(f.reason == Reason.COUNT_MISMATCH for f in found)
    assert [(f.series_uid, f.expected, f.actual) for f in found] == [
        (None, "5", "6"), (None, "2", "3"), ("2", "2", "1"), ("3", "0", "2")]
    assert compare_counts(expected, expected) == []
    assert compare_counts(expected, StudyCount("1.1")) == []  # archive said nothing
    comparer = Comparer()
    comparer.compare_counts(expected, actual)
    assert comparer.tally.by_reason[Reason.COUNT_MISMATCH] == 4 and comparer.tally.studies_counted == 1
    with pytest.raises(ValueError):
        compare_counts(expected, StudyCount("9.9"))


def test_unsettled_instances_have_no_findings():
    late_missing = ex(h(sop="1", availability="ONLINE"), settled=False)
    late_mismatch = ex(h(sop="2", availability="ONLINE", retrieve_ae="A"), settled=False)
    found, tally = run([late_missing, late_mismatch], [h(sop="2", availability="OFFLINE", retrieve_ae="B")])
    assert found == []
    assert (tally.skipped, tally.expected_checked, tally.matched, tally.actual_seen) == (2, 0, 0, 1)


def test_unsorted_expected_raises():
    with pytest.raises(UnsortedInput):
        run([ex(h(sop="2")), ex(h(sop="1"))], [])
    with pytest.raises(UnsortedInput):  # across studies too
        run([ex(h("1.2")), ex(h("1.3")), ex(h("1.2", sop="9"))], [])
    with pytest.raises(UnsortedInput):  # an expected key twice is a producer's bug
        run([ex(h()), ex(h())], [])


def test_unsorted_actual_raises():
    with pytest.raises(UnsortedInput):
        run([], [h(series="2"), h(series="1")])
    with pytest.raises(UnsortedInput):
        # "1.10" < "1.9" in code-point order: a numeric sort is not the order the join needs.
        run([], [h("1.9"), h("1.10")])


def test_compare_study_refuses_another_study():
    with pytest.raises(UnsortedInput):
        list(Comparer().compare_study("1.1", [ex(h("1.2"))], []))
    with pytest.raises(UnsortedInput):
        list(Comparer().compare_study("1.1", [], [h("1.2")]))


def test_duplicates_in_actual_are_merged():
    a1 = h(availability="NEARLINE", retrieve_ae="TAPE")
    a2 = h(availability="ONLINE", retrieve_ae="DISK")
    found, tally = run([ex(h(availability="ONLINE", retrieve_ae="DISK"))], [a1, a2])
    assert found == [] and tally.duplicates_merged == 1 and tally.actual_seen == 1
    merged = merge_holdings(a1, a2)
    assert (merged.availability, merged.retrieve_ae) == ("ONLINE", "DISK\\TAPE")
    assert merge_holdings(h(removed=True), h()).removed
    # A duplicate unexpected instance is one finding.
    found, _ = run([], [h(), h()])
    assert reasons(found) == [Reason.UNEXPECTED_IN_ARCHIVE]


def test_unreadable_study_is_one_archive_error():
    comparer = Comparer()
    expected = [ex(h(sop="1")), ex(h(sop="2")), ex(h(sop="3"), settled=False)]
    found = list(comparer.compare_study("1.1", expected, Unreadable("C-FIND failed: 0xA700")))
    assert reasons(found) == [Reason.ARCHIVE_ERROR]
    assert (found[0].series_uid, found[0].sop_uid) == (None, None)
    assert "0xA700" in found[0].detail and found[0].expected == "2"
    t = comparer.tally
    assert (t.unchecked, t.skipped, t.expected_checked) == (2, 1, 0)
    assert t.by_reason == {Reason.ARCHIVE_ERROR: 1}


def test_errors_in_the_whole_stream():
    expected = [ex(h("1.1")), ex(h("1.2")), ex(h("1.3"))]
    actual = [h("1.2", sop="7"), h("1.3")]  # what the archive did list for 1.2 is not trusted
    found, tally = run(expected, actual, errors={"1.2": "association aborted", "1.0": "refused"})
    assert [(f.reason, f.study_uid) for f in found] == [
        (Reason.ARCHIVE_ERROR, "1.0"), (Reason.MISSING_IN_ARCHIVE, "1.1"), (Reason.ARCHIVE_ERROR, "1.2")]
    assert tally.matched == 1 and tally.unchecked == 1


def test_query_path_interleaving():
    """Study lists merged first; each study then compared, counted, or reported unexpected."""
    comparer = Comparer()
    findings = []
    pairs = list(pair_studies(["1.1", "1.2", "1.4"], ["1.2", "1.3", "1.3", "1.4"]))
    assert [(p.study_uid, p.expected, p.actual) for p in pairs] == [
        ("1.1", True, False), ("1.2", True, True), ("1.3", False, True), ("1.4", True, True)]
    for pair in pairs:
        if not pair.expected:
            findings.append(comparer.unexpected_study(pair.study_uid, StudyCount(pair.study_uid, instance_count=4)))
        elif pair.study_uid == "1.4":
            findings += comparer.compare_study("1.4", [ex(h("1.4"))], Unreadable("timeout"))
        else:
            actual = [h("1.2")] if pair.actual else []
            findings += comparer.compare_study(pair.study_uid, [ex(h(pair.study_uid))], actual)
    assert [(f.reason, f.study_uid) for f in findings] == [
        (Reason.MISSING_IN_ARCHIVE, "1.1"), (Reason.UNEXPECTED_IN_ARCHIVE, "1.3"), (Reason.ARCHIVE_ERROR, "1.4")]
    assert findings[1].actual == "4"
    with pytest.raises(UnsortedInput):
        list(pair_studies(["1.2", "1.1"], []))


@pytest.mark.slow
def test_memory_is_constant_for_long_streams():
    """Generators in, generator out: a million-instance join never materialises either side."""
    def expected():
        for i in range(200_000):
            yield ex(h(f"1.{i // 100:06d}", "1", f"{i:07d}", availability="ONLINE"))

    def actual():
        for i in range(200_000):
            if i % 1000:
                yield h(f"1.{i // 100:06d}", "1", f"{i:07d}", availability="ONLINE")

    tally = Tally()
    n = sum(1 for _ in compare(expected(), actual(), tally=tally))
    assert n == 200 and tally.matched == 199_800


# --- property: the merge-join equals a naive set-based comparison ------------------------------------------

STUDIES, SERIES, SOPS = ["1", "1.10", "1.2", "2"], ["1", "2"], ["1", "2", "3"]
holdings = st.builds(
    Holding, st.sampled_from(STUDIES), st.sampled_from(SERIES), st.sampled_from(SOPS),
    availability=st.sampled_from(["", "ONLINE", "NEARLINE", "UNAVAILABLE"]),
    retrieve_ae=st.sampled_from(["", "A", "B", "A\\B"]),
    retrieve_url=st.sampled_from(["", "http://x", "http://y"]),
    removed=st.booleans())


def naive(expected: list[Expected], actual: list[Holding], rules: Rules, errors: dict[str, str]) -> list[Discrepancy]:
    exp = {e.holding.key: e for e in expected}
    groups: dict[tuple, list[Holding]] = defaultdict(list)
    for a in actual:  # arrival order kept within a key, as a stable sort keeps it
        groups[a.key].append(a)
    act = {k: reduce(merge_holdings, g) for k, g in groups.items()}
    found = []
    for study, reason in errors.items():
        settled = sum(1 for e in expected if e.holding.study_uid == study and e.settled)
        found.append(Discrepancy(Reason.ARCHIVE_ERROR, study, None, None,
                                 f"the archive could not be read for this study: {reason}; "
                                 f"{settled} expected instance(s) not checked", expected=str(settled), actual=reason))
    for key, e in exp.items():
        if key[0] in errors or not e.settled:
            continue
        if key not in act:
            found.append(Discrepancy(Reason.MISSING_IN_ARCHIVE, *key, "announced by IAN, not held by the archive",
                                     expected=e.holding.availability or None))
        else:
            found += check_instance(e.holding, act[key], rules)
    for key, a in act.items():
        if key not in exp and key[0] not in errors:
            found.append(Discrepancy(Reason.UNEXPECTED_IN_ARCHIVE, *key, "held by the archive, announced by no IAN",
                                     actual=a.availability or None))
    return found


def _order(d: Discrepancy):
    return (d.study_uid, d.series_uid or "", d.sop_uid or "", d.reason)


@settings(max_examples=300, deadline=None)
@given(expected=st.dictionaries(st.tuples(st.sampled_from(STUDIES), st.sampled_from(SERIES), st.sampled_from(SOPS)),
                                st.tuples(holdings, st.booleans()), max_size=20),
       actual=st.lists(holdings, max_size=25),
       errors=st.dictionaries(st.sampled_from(STUDIES + ["0", "3"]), st.sampled_from(["timeout", "refused"]), max_size=2),
       rules=st.builds(Rules, st.booleans(), st.booleans()))
def test_merge_join_equals_naive_comparison(expected, actual, errors, rules):
    exp = [Expected(Holding(*key, availability=x.availability, retrieve_ae=x.retrieve_ae,
                            retrieve_url=x.retrieve_url), settled) for key, (x, settled) in expected.items()]
    exp.sort(key=lambda e: e.holding.key)
    act = sorted(actual, key=lambda a: a.key)  # stable: duplicates stay in arrival order
    tally = Tally()
    found = list(compare(exp, act, rules, errors=errors, tally=tally))
    assert sorted(found, key=_order) == sorted(naive(exp, act, rules, errors), key=_order)
    # Findings come out in study order, and the tally adds up.
    assert [f.study_uid for f in found] == sorted(f.study_uid for f in found)
    assert sum(tally.by_reason.values()) == len(found)
    checked = [e for e in exp if e.settled and e.holding.study_uid not in errors]
    assert tally.expected_checked == len(checked)
    assert tally.skipped == sum(1 for e in exp if not e.settled)
    assert tally.unchecked == sum(1 for e in exp if e.settled and e.holding.study_uid in errors)
    with_findings = {(f.study_uid, f.series_uid, f.sop_uid) for f in found
                     if f.reason not in (Reason.UNEXPECTED_IN_ARCHIVE, Reason.ARCHIVE_ERROR)}
    assert tally.matched == len(checked) - len(with_findings)


@settings(max_examples=100, deadline=None)
@given(st.lists(holdings, min_size=2, max_size=10))
def test_any_unsorted_input_raises(actual):
    if sorted(actual, key=lambda a: a.key) == actual:
        actual = list(reversed(actual))
    if sorted(actual, key=lambda a: a.key) == actual:
        return  # all keys equal: a valid order
    with pytest.raises(UnsortedInput):
        run([], actual)


# --- property: the study-grouped comparison of rows equals the merge-join ------------------------------------

def as_row(x: Holding, flag: bool) -> tuple:
    return (x.study_uid, x.series_uid, x.sop_uid, x.availability, x.retrieve_ae, x.retrieve_url, flag)


def by_study(rows: list[tuple]) -> list[tuple[str, list[tuple]]]:
    """Grouped by study in study order; within a study, the order given (a stable sort)."""
    return [(study, list(group)) for study, group in groupby(sorted(rows, key=lambda r: r[0]), lambda r: r[0])]


@settings(max_examples=400, deadline=None)
@given(expected=st.dictionaries(st.tuples(st.sampled_from(STUDIES), st.sampled_from(SERIES), st.sampled_from(SOPS)),
                                st.tuples(holdings, st.booleans()), max_size=20),
       actual=st.lists(holdings, max_size=25),
       errors=st.dictionaries(st.sampled_from(STUDIES + ["0", "3"]), st.sampled_from(["timeout", "refused"]), max_size=2),
       rules=st.builds(Rules, st.booleans(), st.booleans()),
       matching=st.booleans(), seed=st.integers(0, 2**16))
def test_compare_studies_equals_the_merge_join(expected, actual, errors, rules, matching, seed):
    exp = [Expected(Holding(*key, availability=x.availability, retrieve_ae=x.retrieve_ae,
                            retrieve_url=x.retrieve_url), settled) for key, (x, settled) in expected.items()]
    exp.sort(key=lambda e: e.holding.key)
    if matching:  # the archive holds exactly what is expected (the fast path), plus what `actual` adds
        actual = [e.holding for e in exp] + actual
    # The reference: the Inventory path before it was made fast (spool-merged, then the merge-join).
    reference_tally = Tally()
    reference = list(compare(exp, merge_runs(sorted(actual, key=lambda a: a.key)), rules, errors=errors,
                             tally=reference_tally))

    exp_rows = [as_row(e.holding, not e.settled) for e in exp]
    random.Random(seed).shuffle(exp_rows)  # any order within a study
    act_rows = [as_row(a, a.removed) for a in actual]
    tally = Tally()
    found = list(Comparer(rules, tally).compare_studies(by_study(exp_rows), by_study(act_rows), errors))
    assert found == reference
    assert tally == reference_tally


def test_compare_studies_refuses_studies_out_of_order():
    rows = [("1.2", [("1.2", "1", "1", "", "", "", False)]), ("1.10", [("1.10", "1", "1", "", "", "", False)])]
    with pytest.raises(UnsortedInput):
        list(Comparer().compare_studies(rows, []))
    with pytest.raises(UnsortedInput):
        list(Comparer().compare_studies([], [rows[0], rows[0]]))
